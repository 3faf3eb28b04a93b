"""The peer of the benchmark: diffusers' UNet2DModel with DDPMScheduler / DDIMScheduler, trained with
the recipe of diffusers' examples/unconditional_image_generation/train_unconditional.py.

Benchmark-only: diffusers is the optional extra `bench` (pip install -e .[bench]), never a
dependency of the course. Nothing is downloaded: the UNet2DModel is built from a config with
random weights (never from_pretrained).

The recipe, as train_unconditional.py sets it up (its defaults):
  AdamW(lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8); LR schedule "cosine" with
  500 warmup steps over the planned number of steps; gradient clipping at norm 1.0;
  EMAModel(decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3/4), stepped after every
  update; loss F.mse_loss(noise_pred, noise) with timesteps ~ U{0..999} and
  DDPMScheduler(num_train_timesteps=1000) (linear betas 1e-4..0.02, as ours); loss.item() read
  every step (its progress bar); bf16 autocast on CUDA (accelerate's mixed_precision="bf16"),
  float32 elsewhere; eager mode. Sampling: the DDPMPipeline loop (unet(x, t).sample, then
  scheduler.step) with the scheduler's defaults (clip_sample=True); DDIM with
  DDIMScheduler.from_config(the DDPM scheduler's config), eta = 0.
Two deliberate differences from the script, both in the peer's favour: the images are kept on the
device (no DataLoader, no augmentation), and the batch size is the benchmark's (128 on the CPU).

Time index: diffusers' timestep k in 0..999 is our t = k + 1 (see diffusion_lib/process/schedules.py).
"""
from __future__ import annotations

import contextlib
import copy
import time

import torch
import torch.nn.functional as F

# Peer architectures of the reference figures (the course's original `small` U-Net has a
# matched count: 0.92M on digits): digits 8x8, channels 32/64, attention at 4x4, 1.00M parameters;
# MNIST padded to 32x32, channels 32/64/128, attention at 16x16 and 8x8, 4.02M parameters.
PEER_ARCH = {
    8: dict(block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D")),
    32: dict(block_out_channels=(32, 64, 128),
             down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
}
# A peer with about the parameter count of our `cpu` preset's U-Net (sampling throughput only):
# it separates what the architecture choice buys from what the implementation buys.
PEER_SMALL_ARCH = {
    8: dict(block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8),
}
RECIPE = dict(lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8, lr_schedule="cosine",
              warmup_steps=500, grad_clip=1.0, ema_max_decay=0.9999, ema_inv_gamma=1.0, ema_power=0.75)


def build_unet(image_size: int, in_channels: int = 1, small: bool = False, seed: int = 0):
    """A UNet2DModel from a config (random init, seeded); no download."""
    from diffusers import UNet2DModel

    arch = (PEER_SMALL_ARCH if small else PEER_ARCH)[image_size]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=image_size, in_channels=in_channels, out_channels=in_channels,
                           **{"layers_per_block": 2, **arch})


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


class PeerTrainer:
    """train_unconditional.py's loop, stepped from outside (so the benchmark can interleave and snapshot).

    images: (N, C, H, W) in [-1, 1] on `device`, H = W = 8 or 32.  planned_steps: the horizon of
    the cosine LR schedule (the script's num_epochs * len(dataloader)).
    """

    def __init__(self, images: torch.Tensor, batch_size: int, planned_steps: int, seed: int = 0, **recipe):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        r = {**RECIPE, **recipe}
        self.recipe, self.images, self.batch_size = r, images, batch_size
        self.device = images.device
        self.model = build_unet(images.shape[-1], images.shape[1], seed=seed).to(self.device).train()
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=r["lr"], betas=r["betas"],
                                           weight_decay=r["weight_decay"], eps=r["eps"])
        self.lr_schedule = get_scheduler(r["lr_schedule"], optimizer=self.optimizer,
                                         num_warmup_steps=r["warmup_steps"], num_training_steps=planned_steps)
        self.ema = EMAModel(self.model.parameters(), decay=r["ema_max_decay"], use_ema_warmup=True,
                            inv_gamma=r["ema_inv_gamma"], power=r["ema_power"])
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.step_count, self.losses = 0, []

    def step(self) -> float:
        """One optimizer step of the recipe; returns the loss (read back, as the script's progress bar does)."""
        g, B = self.generator, self.batch_size
        idx = torch.randint(self.images.shape[0], (B,), generator=g, device=self.device)
        clean = self.images[idx]
        noise = torch.randn(clean.shape, generator=g, device=self.device)
        timesteps = torch.randint(0, 1000, (B,), generator=g, device=self.device).long()
        noisy = self.scheduler.add_noise(clean, noise, timesteps)
        with _autocast(self.device):
            noise_pred = self.model(noisy, timesteps).sample
        loss = F.mse_loss(noise_pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe["grad_clip"])
        self.optimizer.step()
        self.lr_schedule.step()
        self.ema.step(self.model.parameters())
        for p in self.model.parameters():
            p.grad = None
        self.step_count += 1
        value = loss.detach().item()
        self.losses.append(value)
        return value

    def ema_unet(self):
        """A copy of the U-Net holding the EMA weights, in eval mode."""
        unet = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.ema.copy_to(unet.parameters())
        return unet


class StopSampling(Exception):
    """Raised to end a timed sampling run after a given number of steps."""


@torch.inference_mode()
def peer_sample(unet, n: int, sampler: str = "ddpm", steps: int = 1000, batch_size: int = 1000, seed: int = 0,
                max_steps: int | None = None, step_times: list | None = None) -> torch.Tensor:
    """n samples (n, C, H, W) on the CPU, clamped to [-1, 1], with the DDPMPipeline loop.

    sampler "ddpm" (DDPMScheduler, all 1000 steps) or "ddim" (DDIMScheduler from the same config,
    `steps` steps, eta = 0). max_steps: stop each batch after that many steps (for per-step
    timing; then returns None); step_times: appends time.perf_counter() after every step.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    device = next(unet.parameters()).device
    base = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    scheduler = base if sampler == "ddpm" else DDIMScheduler.from_config(base.config)
    scheduler.set_timesteps(1000 if sampler == "ddpm" else steps)
    generator = torch.Generator(device).manual_seed(seed)
    C, H = unet.config.in_channels, unet.config.sample_size
    out = []
    for b in range(0, n, batch_size):
        x = torch.randn((min(batch_size, n - b), C, H, H), generator=generator, device=device)
        for i, t in enumerate(scheduler.timesteps):
            if max_steps is not None and i == max_steps:
                break
            with _autocast(device):
                eps_hat = unet(x, t).sample
            kwargs = {"eta": 0.0} if sampler == "ddim" else {}
            x = scheduler.step(eps_hat.float(), t, x, generator=generator, **kwargs).prev_sample
            if step_times is not None:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                step_times.append(time.perf_counter())
        if max_steps is None:
            out.append(x.clamp(-1, 1).float().cpu())
    return torch.cat(out) if out else None
