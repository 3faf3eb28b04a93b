"""The noise-prediction network eps_theta(x_t, t): a compact U-Net in the style of DDPM.

DDPM (Ho et al. 2020), sec. 4 and appendix B: a PixelCNN++-like U-Net with GroupNorm, residual
blocks into which the time step is added, and self-attention at a low resolution; the time step
enters through the Transformer's sinusoidal position embedding (Vaswani et al. 2017).
This one is small (0.1M-2M parameters) so that it trains on a laptop CPU; read in notebooks/04.

Shapes through the network for the DIGITS configuration (8x8, channels 32 x (1, 2)):

    x (B, 1, 8, 8) -> conv_in (B, 32, 8, 8)
    down:  2 ResBlocks at 8x8 (32 ch)  -> Downsample -> (B, 32, 4, 4)
           2 ResBlocks at 4x4 (64 ch)                      (the lowest resolution)
    middle: ResBlock, SelfAttention over the 16 positions, ResBlock      (B, 64, 4, 4)
    up:    3 ResBlocks at 4x4, each fed [h, skip] -> Upsample -> (B, 64, 8, 8)
           3 ResBlocks at 8x8 (32 ch)
    out:   GroupNorm, SiLU, conv_out -> eps_hat (B, 1, 8, 8)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validate import INT_DTYPES



@dataclass(frozen=True)
class UNetConfig:
    """Size and shape of a UNet; named instances below (TINY, DIGITS, MNIST28, MNIST32).

    in_channels, image_size: the images, (in_channels, image_size, image_size).
    base_channels: channels at full resolution; level i has base_channels * channel_mults[i]
      channels and resolution image_size / 2**i, so image_size must be divisible by
      2**(len(channel_mults) - 1).  28x28 MNIST needs no padding: mults (1, 2, 2) give
      28 -> 14 -> 7 (MNIST28); MNIST padded to 32x32 as in DDPM (load_dataset(..., pad_to=32),
      CLI --pad-to 32) takes four levels 32 -> 16 -> 8 -> 4 (MNIST32).
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attention: self-attention in the middle block, at the lowest resolution only.
    time_embed_dim: width of the time embedding after its MLP.
    dropout: dropout rate inside the residual blocks (DDPM used 0.1 on CIFAR-10).
    groups: GroupNorm groups; must divide every channel count.
    num_classes: 0 for an unconditional model eps(x_t, t); C > 0 for a class-conditional one,
      eps(x_t, t, y) with labels y in 0..C-1 and y = C the "null" label, "no label" (trained by
      label dropout, notebooks/09, eq. (1.7); classifier-free guidance, Ho & Salimans 2022).
    """

    in_channels: int = 1
    image_size: int = 8
    base_channels: int = 32
    channel_mults: tuple = (1, 2)
    num_res_blocks: int = 2
    attention: bool = True
    time_embed_dim: int = 128
    dropout: float = 0.0
    groups: int = 8
    num_classes: int = 0

    def __post_init__(self):
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))   # lists from dicts
        for name in ("in_channels", "image_size", "base_channels", "num_res_blocks", "time_embed_dim", "groups"):
            value = getattr(self, name)
            smallest = 0 if name == "num_res_blocks" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {value!r}")
        if not self.channel_mults or not all(isinstance(m, int) and m >= 1 for m in self.channel_mults):
            raise ValueError(f"UNetConfig.channel_mults must be a non-empty tuple of positive ints, "
                             f"got {self.channel_mults!r}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**(levels - 1) = {factor} "
                             f"for channel_mults {self.channel_mults}; pad the images or use fewer levels")
        bad = [self.base_channels * m for m in self.channel_mults if (self.base_channels * m) % self.groups]
        if bad:
            raise ValueError(f"every channel count base_channels * mult must be divisible by groups="
                             f"{self.groups}, got {bad} (base_channels={self.base_channels})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"UNetConfig.num_classes must be an integer >= 0 (0: unconditional), "
                             f"got {self.num_classes!r}")

    def to_dict(self) -> dict:
        """Plain Python values only (safe for torch.load(weights_only=True))."""
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        """Inverse of to_dict; unknown or missing keys raise ValueError naming them. A dict without
        num_classes (written before conditional models existed) is an unconditional model."""
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not (known - set(OPTIONAL) <= set(d) <= known):
            got = set(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"a UNetConfig dict needs the keys {sorted(known)} ({', '.join(OPTIONAL)} may be "
                             f"missing), got {got}")
        return cls(**{**OPTIONAL, **d})


OPTIONAL = {"num_classes": 0}       # keys that older checkpoints lack, with the value they meant


# Named instances (what unet_config_for returns for these shapes). TINY: the `fast` preset (tests,
# FAST=1 notebooks) and the `cpu` preset on 8x8 digits (0.16M parameters, 0.6 MiB float32): the
# per-step cost sets both training and sampling time on a CPU, and a sampling step of this size costs
# several times less than one of DIGITS below (measured: benchmarks/README.md, "Speed options")
# while it still trains good digits (README, "The shipped checkpoint").
# DIGITS: the first `cpu` model (0.92M parameters, 3.5 MiB), kept for checkpoints trained with it.
TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, time_embed_dim=64)
DIGITS = UNetConfig(base_channels=32, channel_mults=(1, 2), num_res_blocks=2, time_embed_dim=128)
MNIST28 = UNetConfig(image_size=28, base_channels=32, channel_mults=(1, 2, 2), time_embed_dim=128)
MNIST32 = UNetConfig(image_size=32, base_channels=32, channel_mults=(1, 2, 2, 2), time_embed_dim=128)

SIZES = {"tiny": (16, 1), "small": (32, 2), "base": (64, 2)}     # base_channels, num_res_blocks


def unet_config_for(shape, size: str = "small") -> UNetConfig:
    """The UNetConfig for square images of `shape` (C, H, W): "tiny" (fast and cpu presets), "small"
    (gpu preset), "base" (a wider model for longer GPU runs).

    Levels: the resolution is halved while it stays even and >= 4, at most 4 levels
    (8 -> 4;  28 -> 14 -> 7;  32 -> 16 -> 8 -> 4), with channel_mults (1, 2, 2, 2)[:levels].
    unet_config_for((1, 8, 8)) == DIGITS, unet_config_for((1, 28, 28)) == MNIST28.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"shape must be (C, H, W) with H == W, got {tuple(shape)}")
    base, blocks = SIZES[size]
    levels, res = 1, shape[1]
    while levels < 4 and res % 2 == 0 and res // 2 >= 4:
        levels, res = levels + 1, res // 2
    return UNetConfig(in_channels=shape[0], image_size=shape[1], base_channels=base,
                      channel_mults=(1, 2, 2, 2)[:levels], num_res_blocks=blocks, time_embed_dim=4 * base)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer time steps: (B,) -> (B, dim), float32.

    emb[:, i] = cos(t * w_i),  emb[:, half + i] = sin(t * w_i),  w_i = max_period^(-i / half),
    i = 0..half-1, half = dim // 2 (a zero column is appended when dim is odd).
    Transformer position encoding (Vaswani et al. 2017, sec. 3.5), used for t by DDPM (appendix B);
    written after `timestep_embedding` in improved-diffusion's nn.py. notebooks/04, sec. 2.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]                        # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)        # (B, 2 * half)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so its block starts as the identity (improved-diffusion's zero_module)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """x + F(x, emb): GroupNorm, SiLU, conv 3x3, + Linear(emb) per channel, GroupNorm, SiLU, dropout,
    conv 3x3 (zero-initialised). (B, c_in, H, W), (B, E) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_proj = nn.Linear(emb_dim, c_out)
        self.norm2, self.dropout = nn.GroupNorm(groups, c_out), nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                          # (B, c_out, H, W)
        h = h + self.time_proj(F.silu(emb))[:, :, None, None]          # time step enters here
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """x + proj(softmax(q k^T / sqrt(C)) v) over the H*W positions, one head. (B, C, H, W) -> same."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(2, 3).unbind(1)  # 3 x (B, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)                     # (B, HW, C)
        return x + self.proj(h.transpose(1, 2).reshape(B, C, H, W))


class UNet(nn.Module):
    """eps_theta(x_t, t): predicts the noise eps in x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

    forward(x: (B, C, H, W) float, t: LongTensor (B,) in 1..T) -> eps_hat (B, C, H, W).
    DDPM (Ho et al. 2020) sec. 4, appendix B; notebooks/04, sec. 2.
    Class-conditional (config.num_classes = C > 0): forward(x, t, y), y a LongTensor (B,) in 0..C,
    C meaning "no label"; a learned embedding of y is added to the time embedding, as in
    improved-diffusion's class-conditional models (Nichol & Dhariwal 2021). notebooks/09, sec. 3.
    """

    def __init__(self, config: UNetConfig = DIGITS):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = c = config
        E, chans = c.time_embed_dim, [c.base_channels * m for m in c.channel_mults]
        block = lambda c_in, c_out: ResBlock(c_in, c_out, E, c.dropout, c.groups)   # noqa: E731
        self.time_mlp = nn.Sequential(nn.Linear(c.base_channels, E), nn.SiLU(), nn.Linear(E, E))
        if c.num_classes:                                                 # labels 0..C-1 and the null label C
            self.label_emb = nn.Embedding(c.num_classes + 1, E)
        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)
        self.down, skips, ch = nn.ModuleList(), [c.base_channels], c.base_channels
        for i, c_level in enumerate(chans):
            for _ in range(c.num_res_blocks):
                self.down.append(block(ch, c_level))
                ch = c_level
                skips.append(ch)
            if i < len(chans) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))     # Downsample: H -> H/2
                skips.append(ch)
        self.mid = nn.ModuleList([block(ch, ch), SelfAttention(ch, c.groups) if c.attention else nn.Identity(),
                                  block(ch, ch)])
        self.up = nn.ModuleList()
        for i, c_level in reversed(list(enumerate(chans))):
            for _ in range(c.num_res_blocks + 1):
                self.up.append(block(ch + skips.pop(), c_level))
                ch = c_level
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))  # Upsample: H -> 2H
        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = _zero(nn.Conv2d(ch, c.in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, t)
        self._check_labels(x, y)
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))   # (B, E)
        if y is not None:
            emb = emb + self.label_emb(y)                                        # the label enters with t
        h = self.conv_in(x)                                                      # (B, c0, H, W)
        hs = [h]                                                                 # skip connections
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)       # resolution halves at Downsample
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)                   # lowest resolution
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)                  # (B, c + c_skip, .) -> (B, c, .)
            else:
                h = layer(h)                                                     # resolution doubles
        return self.conv_out(F.silu(self.norm_out(h)))                           # (B, C, H, W)

    def _check_inputs(self, x, t) -> None:
        """Cheap checks of shapes and dtypes (no device synchronisation; t's range is not checked)."""
        c = self.config
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor (B, C, H, W), got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"x must have shape (B, {c.in_channels}, {c.image_size}, {c.image_size}) for "
                             f"this UNet, got {tuple(x.shape)}")
        if not isinstance(t, torch.Tensor) or t.dtype not in INT_DTYPES:
            raise TypeError(f"t must be an integer tensor (torch.long) of shape (B,) with values in 1..T, got "
                            f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), one time step per image, got {tuple(t.shape)}")

    def _check_labels(self, x, y) -> None:
        """y given exactly when the model is conditional; its range is checked where that costs no
        device synchronisation (on the CPU; guided() checks labels before they reach a GPU)."""
        C = self.config.num_classes
        if not C:
            if y is not None:
                raise TypeError("this UNet is unconditional (num_classes = 0): call it as model(x_t, t), "
                                "without labels")
            return
        if y is None:
            raise TypeError(f"this UNet is class-conditional (num_classes = {C}): call it as model(x_t, t, y) "
                            f"with y a LongTensor (B,) of labels in 0..{C - 1}, or {C} for 'no label'; "
                            f"guided(model, y, w) makes it a sampler's (x_t, t) -> eps callable")
        if not isinstance(y, torch.Tensor) or y.dtype not in INT_DTYPES or y.shape != (x.shape[0],):
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be an integer tensor of shape ({x.shape[0]},), one label per image, got {got}")
        if y.device.type == "cpu" and y.numel() and not 0 <= int(y.min()) <= int(y.max()) <= C:
            raise ValueError(f"labels must lie in 0..{C - 1} (or {C}, 'no label'), got values "
                             f"{int(y.min())}..{int(y.max())}")


def model_summary(model: nn.Module) -> tuple[int, str]:
    """(parameter count, one-line summary) of a UNet, e.g. for a notebook's first training cell."""
    n = sum(p.numel() for p in model.parameters())
    c = getattr(model, "config", None)
    if not isinstance(c, UNetConfig):
        return n, f"{type(model).__name__}: {n / 1e6:.2f}M parameters ({4 * n / 2**20:.1f} MiB in float32)"
    low = c.image_size // 2 ** (len(c.channel_mults) - 1)
    attn = f"attention at {low}x{low}" if c.attention else "no attention"
    labels = f", {c.num_classes} classes + 'no label'" if c.num_classes else ""
    return n, (f"UNet {c.in_channels}x{c.image_size}x{c.image_size}: channels {c.base_channels} x "
               f"{c.channel_mults}, {c.num_res_blocks} res blocks/level, {attn}{labels}, "
               f"{n / 1e6:.2f}M parameters ({4 * n / 2**20:.1f} MiB in float32)")
