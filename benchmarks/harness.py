"""What the benchmark measures with, for ours and the peer alike: training in slices on each run's
own clock, snapshots of the EMA weights, timed sampling steps, peak memory.

Each run keeps its own clock: it advances only while that run trains, so the benchmark can
interleave the two (peer slice, ours slice, peer slice, ...) and a burst of load from other jobs
on a shared machine hits both alike.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import PeerTrainer, StopSampling, peer_sample  # noqa: E402

from diffusion_lib.samplers.batch import sample_images  # noqa: E402
from diffusion_lib.samplers.ddim import ddim_sample  # noqa: E402
from diffusion_lib.samplers.ddpm import ddpm_sample  # noqa: E402
from diffusion_lib.training.loop import train  # noqa: E402
from diffusion_lib.model.unet import UNet  # noqa: E402


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory during a `with` block: CUDA's max_memory_allocated, else the process's peak
    resident set (VmHWM, reset through /proc/self/clear_refs; Linux). In MiB; None where unknown."""

    def __init__(self, device):
        self.device, self.peak = torch.device(device), None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            try:
                kb = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
                self.peak = int(kb.group(1)) / 1024 if kb else None
            except OSError:
                self.peak = None
        return False


class OursRun:
    """The library's train() in slices: each slice resumes the checkpoint of the last (train()'s own
    exact resume), with max_seconds = the slice. The clock counts whole train() calls (building the
    model, reading and writing checkpoints included), so it errs against us."""

    def __init__(self, config, data, path: Path, device, seed: int = 0, model_config=None):
        self.config = replace(config, steps=10**9, max_seconds=None)
        self.data, self.path, self.device, self.seed = data, Path(path), device, seed
        self.model_config, self.clock, self.step, self.result = model_config, 0.0, 0, None
        self.rates, self.memory = [], []                       # steps/s of each slice (steady state)
        self.path.unlink(missing_ok=True)

    def train_until(self, clock: float) -> None:
        stamps = []
        config = replace(self.config, max_seconds=max(clock - self.clock, 1e-3))
        with PeakMemory(self.device) as mem:
            start = time.perf_counter()
            self.result = train(config, data=self.data, out=self.path, seed=self.seed, device=self.device,
                                resume=self.step > 0, model_config=self.model_config, progress=False,
                                callback=lambda step, model: stamps.append(time.perf_counter()))
            sync(self.device)
            self.clock += time.perf_counter() - start
        self.memory.append(mem.peak)
        if len(stamps) > 10:                                    # the loop reads back every log_every steps
            self.rates.append((len(stamps) - 5) / (stamps[-1] - stamps[4]))
        self.step = self.result.step

    def snapshot(self) -> dict:
        return {"clock": self.clock, "step": self.step,
                "ema": {k: v.detach().clone() for k, v in self.result.ema_model.state_dict().items()}}

    def model_from(self, snap: dict):
        model = UNet(self.result.ema_model.config).to(self.device)
        model.load_state_dict(snap["ema"])
        return model.eval().requires_grad_(False)


class PeerRun:
    """The peer's training loop (peer.PeerTrainer) on its own clock."""

    def __init__(self, images, batch_size: int, planned_steps: int, seed: int = 0, **recipe):
        self.trainer = PeerTrainer(images, batch_size, planned_steps, seed, **recipe)
        self.device, self.clock, self.rates, self.memory = images.device, 0.0, [], []

    @property
    def step(self) -> int:
        return self.trainer.step_count

    def train_until(self, clock: float) -> None:
        last, steps = 0.0, 0
        with PeakMemory(self.device) as mem:
            start = time.perf_counter()
            while True:
                now = time.perf_counter()
                if self.clock + (now - start) + last > clock:      # the next step would overrun
                    break
                self.trainer.step()                                # reads the loss back: synchronised
                last = time.perf_counter() - now
                steps += 1
            self.clock += time.perf_counter() - start
        self.memory.append(mem.peak)
        if steps > 10:
            self.rates.append(steps / (time.perf_counter() - start))

    def snapshot(self) -> dict:
        return {"clock": self.clock, "step": self.step, "ema": self.trainer.ema_unet()}

    @staticmethod
    def model_from(snap: dict):
        return snap["ema"]


def sample_ours(eps_model, schedule, shape, n: int, sampler: str, steps: int, batch_size: int, seed: int):
    """Our samples and their wall time: samplers.batch.sample_images (the library's samplers) calling eps_model,
    a fast_model(...) kept across calls so that CUDA graphs are captured once per batch shape."""
    sync(eps_model.device)
    start = time.perf_counter()
    x = sample_images(eps_model, schedule, shape, n, sampler, steps, 0.0, seed, batch_size, progress=False)
    return x, time.perf_counter() - start


def sample_peer(unet, n: int, sampler: str, steps: int, batch_size: int, seed: int):
    """The peer's samples (its pipeline loop) and their wall time."""
    device = next(unet.parameters()).device
    sync(device)
    start = time.perf_counter()
    x = peer_sample(unet, n, sampler, steps, batch_size, seed)
    return x, time.perf_counter() - start


def time_steps_ours(eps_model, schedule, shape, sampler: str, k: int, seed: int = 0) -> float:
    """Seconds per step of the library's ddpm_sample / ddim_sample (DDIM-50's sub-sequence), over k
    steps after a warm-up step; the loop is stopped from its callback."""
    device = getattr(eps_model, "device", None) or next(eps_model.parameters()).device
    stamps = []

    def stop_after(t, x):
        if len(stamps) in (0, k):
            sync(device)
        stamps.append(time.perf_counter())
        if len(stamps) == k + 1:
            raise StopSampling

    g = torch.Generator(device).manual_seed(seed)
    try:
        if sampler == "ddpm":
            ddpm_sample(eps_model, shape, schedule, generator=g, callback=stop_after)
        else:
            ddim_sample(eps_model, shape, schedule, steps=max(50, k + 1), generator=g, callback=stop_after)
    except StopSampling:
        pass
    return (stamps[-1] - stamps[0]) / k


def time_steps_peer(unet, batch_size: int, sampler: str, k: int, seed: int = 0) -> float:
    """Seconds per step of the peer's pipeline loop, over k steps after one warm-up step."""
    device = next(unet.parameters()).device
    peer_sample(unet, batch_size, sampler, 50, batch_size, seed, max_steps=1)     # warm-up
    sync(device)
    start = time.perf_counter()
    peer_sample(unet, batch_size, sampler, max(50, k), batch_size, seed, max_steps=k)
    sync(device)
    return (time.perf_counter() - start) / k

