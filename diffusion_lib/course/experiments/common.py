"""What the experiments of notebooks 05 and 06 share: rows of a sampler table, drawing them from one code set
with the shipped model, and the small measures they report."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Sampler:
    """One row of a sampler table (notebooks/06, sec. 5.3 and 6).

    kind "ddim": ddim_sample with `steps` and `eta` (DDIM eq. 12 and 16); eta = 1 on S < T steps is what the
        DDIM paper's Table 1 calls DDPM with S steps: the ancestral step with DDPM's posterior variance over each jump.
    kind "ddpm": ddpm_sample with sigma_t^2 = beta_tilde_t over all T steps (DDPM itself; eta = 1 at S = T).
    kind "sigma_hat": the DDIM paper's sigma_hat rows (sigma_hat_sample): the jump's forward variance.
    clip "keep_eps": x0_hat clamped to [-1, 1], the network's eps kept (ddim_step(clip_x0=True), notebooks/06
        eq. 6.1); "rederive_eps": eps re-derived from the clamped x0_hat (EpsFromClippedX0); "none".
    """
    kind: str
    steps: int
    eta: float = 0.0
    clip: str = "none"

    def __post_init__(self):
        if self.kind not in ("ddim", "ddpm", "sigma_hat") or self.clip not in ("none", "keep_eps", "rederive_eps"):
            raise ValueError(f"unknown sampler {self}: kind must be ddim, ddpm or sigma_hat; clip none, keep_eps or "
                             f"rederive_eps")
        if self.clip != "none" and self.kind != "ddim":
            raise ValueError(f"clipping is measured for DDIM only, got {self}")

    @property
    def label(self) -> str:
        if self.kind == "ddpm":
            return f"DDPM, all {self.steps} steps"
        name = f"sigma_hat, S = {self.steps}" if self.kind == "sigma_hat" else f"eta = {self.eta:g}, S = {self.steps}"
        return name + {"none": "", "keep_eps": ", clip x0_hat (keep eps)", "rederive_eps": ", clip x0_hat (re-derive eps)"}[self.clip]


class EpsFromClippedX0:
    """A model whose eps_hat is re-derived from the clamped x0_hat: (x_t - sqrt(alpha_bar_t) clip(x0_hat)) /
    sqrt(1 - alpha_bar_t) (DDPM eq. 4 solved for eps; notebooks/06, sec. 6.1). A sampler run on it clips x0_hat and
    keeps the pair (x0_hat, eps_hat) a decomposition of x_t: ddpm_sample on it is DDPM's reference sampler
    (clip_denoised=True: mu_tilde(x_t, clip(x0_hat))); ddim_sample on it is improved-diffusion's ddim_sample with
    clip_denoised=True and diffusers' DDIMScheduler with use_clipped_model_output=True."""

    def __init__(self, model, schedule):
        self.model, self.schedule = model, schedule

    def __call__(self, x, t):
        from ...process.posterior import predict_eps, predict_x0

        x0_hat = predict_x0(x, t, self.model(x, t), self.schedule).clamp(-1.0, 1.0)
        return predict_eps(x, t, x0_hat, self.schedule)


def sigma_hat_sample(model, schedule, steps: int, x_T, generator):
    """The DDIM paper's sigma_hat sampler (Table 1) on tau = ddim_timesteps(T, steps), unclipped: each jump t -> s
    draws from N(mu_tilde_{t->s}(x_t, x0_hat), (1 - alpha_bar_t / alpha_bar_s) I), DDPM's posterior mean over the
    jump (= ddim_step at eta = 1 without its noise; notebooks/06, eq. 1.5) with the jump's forward variance, the
    analogue of DDPM's sigma_t^2 = beta_t; the last step (to s = 0) adds no noise. The DDIM authors' code
    (functions/denoising.py, ddpm_steps) also clamps x0_hat. At steps = T it is ddpm_sample(variance="beta"),
    draw for draw (one z drawn per step, as ddpm_sample does). x_T: (B, ...); returns x_0."""
    import torch

    from ...samplers.ddim import ddim_step, ddim_timesteps
    from ...samplers.loop import call_model

    ab, taus, x = schedule.alpha_bars, ddim_timesteps(schedule.T, steps) + [0], x_T.clone()
    with torch.no_grad():
        for t, s in zip(taus[:-1], taus[1:]):
            eps_hat = call_model(model, x, t)
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = ddim_step(x, t, s, eps_hat, schedule, eta=1.0, noise=torch.zeros_like(x))   # mu_tilde over the jump
            if s > 0:
                x = x + float((1 - ab[t] / ab[s]).sqrt()) * z                             # sigma_hat, DDIM Table 1
    return x


def draw(net, schedule, row: Sampler, x_T, noise_seed: int = 0):
    """x_0 of one sampler from the codes x_T (B, ...), fresh noise from a generator seeded `noise_seed` on x_T's
    device; clamped to [-1, 1], float32 on the CPU. net: the model, e.g. model.fast.fast_model(model)."""
    import torch

    from ...samplers.ddim import ddim_sample
    from ...samplers.ddpm import ddpm_sample

    g = torch.Generator(x_T.device).manual_seed(noise_seed)
    if row.kind == "ddpm":
        x = ddpm_sample(net, None, schedule, x_T=x_T, generator=g)
    elif row.kind == "sigma_hat":
        x = sigma_hat_sample(net, schedule, row.steps, x_T, g)
    else:
        model = EpsFromClippedX0(net, schedule) if row.clip == "rederive_eps" else net
        x = ddim_sample(model, None, schedule, steps=row.steps, eta=row.eta, x_T=x_T, generator=g,
                        clip_x0=row.clip == "keep_eps")
    return x.clamp(-1, 1).float().cpu()


def image_rmse(a, b):
    """Per-image RMSE between two image batches (B, C, H, W) in [-1, 1] units, both clamped first. (B,)"""
    return ((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).flatten(1).mean(1).sqrt()


def black_fraction(x) -> float:
    """The fraction of pixels at the bottom of the range (<= -0.999 after clamping): a digit's black background."""
    return float((x.clamp(-1, 1) <= -0.999).double().mean())


def _setup(device=None):
    """The shipped digits model wrapped by fast_model, its schedule, image shape and data name; the load."""
    import os

    from ...model.fast import fast_model
    from ..assets import shipped_model

    model, schedule, info = shipped_model("digits.pt", device=device)
    return fast_model(model), schedule, tuple(info["data"]["shape"]), info["data"]["name"], os.getloadavg()


def _codes(n: int, shape, seed: int, device):
    import torch

    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed)).to(device)
