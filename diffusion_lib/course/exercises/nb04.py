"""Checks for the exercises of notebook 04 (training): 04.1 in sec. 2.5, 04.2 in sec. 3.1, 04.3 in sec. 3.2.

`exercises.check_loss_on_batch(my_loss_on_batch)` and its siblings print "correct", "not yet: ..." (how
far off, where, and the typical mistake the answer matches) or "not attempted yet", and return a Result
(grading.py; docs/design.md, sec. 5). `loss_given_t_and_noise` is what 04.2's check compares with; the
notebook runs on it until the student's answer is correct (`result.use(my_loss_on_batch, fallback=...)`).
"""
from __future__ import annotations

import torch

from .grading import Result, _call, _compare, _predict, _run  # noqa: F401
from ...process.elbo import simple_loss
from ...process.forward import q_sample
from ...process.schedules import linear_schedule
from ...data.toy import gaussian
from ...training.loop import ema_update


# ---- notebooks/04, sec. 3.1 ---------------------------------------------------------------------

def loss_given_t_and_noise(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule) -> torch.Tensor:
    """L_simple of one batch for given time steps and noise: DDPM Algorithm 1, line 5; notebooks/04, eq. (3.1).

    x_t = q_sample(x0, t, schedule, noise) (DDPM eq. 4), then the mean of (noise - model(x_t, t))^2 over all
    elements (simple_loss, DDPM eq. 14). x0, noise: (B, C, H, W); t: LongTensor (B,) in 1..T. A scalar.
    The library's training loss, loop.loss_on_batch, is this with t and noise drawn from a generator.
    """
    return simple_loss(noise, model(q_sample(x0, t, schedule, noise), t))


def check_loss_on_batch(my_loss_on_batch) -> Result:
    """Exercise 04.2: my_loss_on_batch(model, x0, t, noise, schedule) -> L_simple of the batch, a scalar.

    notebooks/04, eq. (3.1) with the given t (LongTensor (B,) in 1..T) and noise: the loss of DDPM
    Algorithm 1, line 5. Compared with loss_given_t_and_noise (simple_loss(noise, model(q_sample(x0, t, schedule,
    noise), t))) on four batches of eight 8x8 images in [-1, 1] (float64); the model is the optimal denoiser of the
    Gaussian N(0, 0.5^2 I) (toy.gaussian), a function of x_t and t in 1..T (it refuses t = 0). A loss is an
    average of squares of numbers of size 1, so the error is absolute (1 is the loss of predicting 0).
    """
    sch, g = linear_schedule(), torch.Generator().manual_seed(40)
    B, D = 8, 64
    x0 = torch.rand(B, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64)
    eps_star = gaussian(torch.zeros(D), torch.full((D,), 0.5)).eps_model(sch)

    def model(xt, t):
        if bool((torch.as_tensor(t) < 1).any()):
            raise ValueError("the network was called at t = 0: it takes the paper's t in 1..T, the t you were "
                             "given (t - 1 is the 0-based habit of other libraries; notebook 00, sec. 5)")
        return eps_star(xt, t)
    a, ab = sch.alphas, sch.alpha_bars
    batches = {"t = 1 for every image": torch.ones(B, dtype=torch.long),
               "t = T for every image": torch.full((B,), sch.T, dtype=torch.long),
               "t = (1, 2, 3, 10, 100, 500, 999, 1000)": torch.tensor([1, 2, 3, 10, 100, 500, 999, 1000]),
               "random t": torch.randint(1, sch.T + 1, (B,), generator=g)}

    def loss(xt, t, target=noise):
        return simple_loss(target, model(xt, t))

    def cases():
        for name, t in batches.items():
            per_image = (B, 1, 1, 1)
            xt = q_sample(x0, t, sch, noise)                                    # DDPM eq. (4)
            yield (f"the batch with {name}", _call(my_loss_on_batch, model, x0, t, noise, sch),
                   loss_given_t_and_noise(model, x0, t, noise, sch), 1.0, {
                "x_t made with alpha_bar_{t-1}: t off by one (index 0 of the schedule is the clean state)":
                    loss(q_sample(x0, t - 1, sch, noise), t),
                "alpha_t in place of alpha_bar_t in x_t (one forward step, not t)":
                    loss(a[t].sqrt().reshape(per_image) * x0 + (1 - a[t]).sqrt().reshape(per_image) * noise, t),
                "x_t without its square roots":
                    loss(ab[t].reshape(per_image) * x0 + (1 - ab[t]).reshape(per_image) * noise, t),
                "alpha_bar_t of image b applied to column b of every image: shape alpha_bar[t] as "
                "(B, 1, 1, 1) to broadcast per image (diffusion_lib.gather does it)":
                    loss(ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * noise, t),
                "the network given x_0 instead of x_t": loss(x0, t),
                "the loss against x_0: the network predicts the noise eps": loss(xt, t, target=x0),
                f"each image's squared error summed over its D = {D} pixels, then averaged over the batch: "
                f"D times (3.1), DDPM eq. (14) without the course's 1/D": D * loss(xt, t)})
    return _run("Exercise 04.2 L_simple on a batch", my_loss_on_batch, lambda: _compare(list(cases())))


def check_conv_params(my_conv_params) -> Result:
    """Exercise 04.1: my_conv_params(c_in, c_out, k) -> the number of parameters of a k x k convolution
    from c_in to c_out channels, with bias (notebooks/04, sec. 2.5, before eq. 2.6), against PyTorch's own count of
    torch.nn.Conv2d(c_in, c_out, k) (built on the meta device: no memory, no random numbers)."""
    def conv2d(c_in, c_out, k):
        return sum(p.numel() for p in torch.nn.Conv2d(c_in, c_out, k, device="meta").parameters())

    def cases():
        for c_in, c_out, k in ((1, 32, 3), (32, 32, 3), (32, 64, 3), (64, 32, 1), (96, 64, 3), (3, 128, 5),
                               (128, 1, 3)):
            n = torch.tensor(float(conv2d(c_in, c_out, k)), dtype=torch.float64)
            yield (f"c_in={c_in}, c_out={c_out}, k={k}", _call(my_conv_params, c_in, c_out, k), n, n, {
                "the weights only: one bias per output channel is missing": n - c_out,
                "k in place of k^2: a k x k kernel has k^2 weights per pair of channels":
                    torch.tensor(float(k * c_in * c_out + c_out), dtype=torch.float64),
                "one bias per input channel, not per output channel": n - c_out + c_in,
                "c_in + c_out in place of c_in c_out: every output channel sees every input channel":
                    torch.tensor(float(k * k * (c_in + c_out) + c_out), dtype=torch.float64)})
    return _run("Exercise 04.1 parameters of a convolution", my_conv_params, lambda: _compare(list(cases())))


def check_ema_share(prediction, decay: float = 0.999, last: int = 1000) -> Result:
    """Exercise 04.3: predict the share of the EMA of the weights that comes from the last `last`
    steps' parameters, with the decay fixed at `decay` (DDPM sec. 4; notebooks/04, sec. 3.2).

    Exact: 1 - decay^last, here computed by running the library's `ema_update` `last` times on a
    parameter that is 1 during those steps, from an EMA of 0. Within 5 % counts.
    """
    ema, param = [torch.zeros((), dtype=torch.float64)], [torch.ones((), dtype=torch.float64)]
    for _ in range(last):
        ema_update(ema, param, decay)                   # ema <- decay ema + (1 - decay) param
    return _predict(
        f"Exercise 04.3 predict the EMA's share of the last {last} steps", prediction, float(ema[0]), None, 0.05,
        f"share of the last {last} steps", f"After a step with parameters theta_n the EMA holds (1 - d) theta_n; every "
        f"later step multiplies that by d. So the last k steps hold (1 - d)(1 + d + ... + d^(k-1)) = 1 - d^k of the "
        f"average and everything before them d^k. With d = {decay} the memory is about 1 / (1 - d) = "
        f"{1 / (1 - decay):.0f} steps: the last {last} hold 1 - e^(-1) = 63 %, the last 3000 hold 95 %. (The library "
        f"also warms the decay up, d_n = min(d, (1 + n)/(10 + n)), which stays below 0.999 until step 8990: in the "
        f"cpu preset's 5000 steps the EMA remembers less than this.)")
