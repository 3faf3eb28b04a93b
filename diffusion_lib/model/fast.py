"""Faster sampling with the same math: a wrapper that makes eps_theta cheaper to call.

The samplers stay the readable ones (ddpm_sample, ddim_sample, ddim_invert): they accept any
callable (x_t, t) -> eps_hat, and `fast_model(model)` returns such a callable. It computes the
same eps_hat as `model` (exactly, in float32) with less overhead:

- no autograd bookkeeping (torch.inference_mode);
- cuda_graph: on CUDA, the forward pass of each batch shape is captured once in a CUDA graph and
  replayed: one launch per call instead of one per layer (a small U-Net is launch-bound);
- channels_last: NHWC activations, which cuDNN's tensor-core convolutions prefer;
- compile: torch.compile (fused GroupNorm + SiLU + add kernels); it costs a compilation first;
- bf16: autocast to bfloat16 (the output is cast back to float32). This one changes the numbers
  (bf16 keeps ~3 significant digits): samples differ from the float32 ones (their FD is compared
  in benchmarks/README.md).

Defaults (fast_model(model)); why each is on or off, as measured: benchmarks/README.md, "Speed
options", with the command that measured it:
- CUDA: cuda_graph and bf16.
- CPU with native bf16 instructions (AVX512-BF16 or AMX: recent AMD and Intel server chips, AMD
  Zen 4 laptops): bf16, which runs natively there.
- any other CPU: nothing (oneDNN emulates bf16 there, slowly): the wrapper only drops autograd
  bookkeeping and the samples are bitwise those of the plain model.
compile and channels_last are off everywhere (on the course's CPU neither paid; benchmarks/gpu.sh
times both on a GPU).
fast_model(model, bf16=False) always gives the plain model's float32 numbers.

    from diffusion_lib.model.fast import fast_model
    x0 = ddpm_sample(fast_model(model), (1000, 1, 8, 8), schedule, generator=g)
"""
from __future__ import annotations

import contextlib
import copy

import torch


class FastModel:
    """A callable (x_t, t) -> eps_hat (float32) around an eps_theta network, in eval mode.

    x: (B, C, H, W) float32;  t: LongTensor (B,) in 1..T;  y: labels (B,) for a class-conditional
    network, (x_t, t, y) -> eps_hat (its `config` is the network's).  The network's weights are shared, not
    copied, unless channels_last needs a copy in that memory format. CUDA graphs are captured per
    batch shape on first use (a few forward passes); the graphs share one memory pool.
    """

    def __init__(self, model: torch.nn.Module, bf16: bool = False, channels_last: bool = False,
                 compile: bool = False, cuda_graph: bool = False):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"fast_model needs a torch.nn.Module (a UNet), got {type(model).__name__}")
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a model on a CUDA device, got one on {self.device}")
        self.bf16, self.channels_last, self.cuda_graph = bf16, channels_last, cuda_graph
        if channels_last:
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.config = getattr(model, "config", None)
        self.net = torch.compile(self.model, dynamic=False) if compile else self.model
        self.graphs: dict = {}          # (shape, dtype, no labels) -> (graph, static x, t, y, eps_hat)
        self.pool = None

    def _forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # cache_enabled=False: autocast's cache of bf16 weight copies must not live inside a CUDA graph
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            eps_hat = self.net(x, t) if y is None else self.net(x, t, y)
        return eps_hat.float().contiguous()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not self.cuda_graph:
            return self._forward(x, t, y)
        key = (tuple(x.shape), x.dtype, y is None)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, t, y)
        graph, x_static, t_static, y_static, out_static = self.graphs[key]
        x_static.copy_(x)
        t_static.copy_(t)
        if y is not None:
            y_static.copy_(y)
        graph.replay()
        return out_static.clone()                 # the static buffer is overwritten by the next call

    def _capture(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None):
        """Capture one forward pass of this shape (after warm-up passes on a side stream)."""
        x_static, t_static, y_static = x.clone(), t.clone(), None if y is None else y.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):                     # cuDNN autotuning, lazy inits, compilation
                self._forward(x_static, t_static, y_static)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out_static = self._forward(x_static, t_static, y_static)
        return graph, x_static, t_static, y_static, out_static

    def __repr__(self) -> str:
        on = [k for k in ("bf16", "channels_last", "cuda_graph") if getattr(self, k)]
        on += ["compile"] if self.net is not self.model else []
        return f"FastModel({type(self.model).__name__} on {self.device}, {', '.join(on) or 'float32 eager'})"


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 instructions (AVX512-BF16 or AMX), where bf16 runs natively."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):          # private helpers of torch.cpu; absent: assume not
        return False


def default_options(device) -> dict:
    """The options fast_model uses by default on `device` (see the module docstring)."""
    kind = torch.device(device).type
    bf16 = kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16())
    return {"bf16": bf16, "channels_last": False, "compile": False, "cuda_graph": kind == "cuda"}


def fast_model(model: torch.nn.Module, **options) -> FastModel:
    """model wrapped for sampling: FastModel(model, **{default_options(its device), **options}).

    fast_model(model, bf16=False) keeps float32 on CUDA (same numbers as the plain model).
    """
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    unknown = set(options) - set(default_options(device))
    if unknown:
        raise ValueError(f"unknown fast_model options {sorted(unknown)}; known: {sorted(default_options(device))}")
    return FastModel(model, **{**default_options(device), **options})
