"""Tests of multi-process training (diffusion_lib/training/distributed.py, train() under torchrun's variables).

What they check, with 2 processes on the CPU (gloo backend), started the way torchrun starts
them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) by torch.multiprocessing:
- both ranks end with identical weights and identical EMA weights, bit for bit (gradients are
  averaged by DistributedDataParallel; without the averaging the ranks, which see different
  data, would drift apart at the first step);
- the ranks really trained on different batches: the 2-process run differs from a 1-process run
  with the same seed (were the shards or the noise the same on both ranks, the averaged
  gradient would equal the single-process one and so would the weights);
- both ranks log the same loss history (the mean over the ranks), and it falls: the mean of the
  last 20 of 60 steps is below half the mean of the first 20 (as in test_train.py, a margin of
  over 10 standard errors of a 20-step mean);
- rank 0 alone writes the checkpoint, and it holds the ranks' EMA weights;
- a time budget stops both ranks at the same step.
- shard() splits a data set like DistributedSampler (disjoint, together everything).

Every check is deterministic (seeded, one thread per process) apart from the time-budget test,
which only asserts that both ranks stopped by time at the same step (true whatever the timing):
designed false-failure rate 0 per test and for the module. Most of the run time is the start-up
of the processes (measured: README, Tests).
"""
import math
import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp

from diffusion_lib.training.checkpoint import load_checkpoint
from diffusion_lib.data import load_dataset
from diffusion_lib.training.distributed import World, shard
from diffusion_lib.training.config import PRESETS
from diffusion_lib.training.loop import train

from conftest import MICRO


pytestmark = pytest.mark.serial      # two training processes and a wall-clock budget: run alone

CONFIG = replace(PRESETS["fast"], steps=60, batch_size=16, warmup_steps=5, log_every=5, save_every=0)
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, folder: str, config) -> None:
    """One training process, as torchrun would start it; writes what it ends with to folder/rank<r>.pt."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(config, data=load_dataset("digits", "train"), model_config=MICRO, device="cpu", seed=0,
                   progress=False, out=os.path.join(folder, "ddp.pt"))
    torch.save({"model": result.model.state_dict(), "ema": result.ema_model.state_dict(),
                "loss": result.history["loss"], "step": result.step, "stopped_by": result.stopped_by},
               os.path.join(folder, f"rank{rank}.pt"))


def _run_two(tmp_path, config):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), config), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    return _run_two(folder, CONFIG), folder


def test_both_ranks_end_with_identical_weights(two_ranks):
    (r0, r1), _ = two_ranks
    assert r0["step"] == r1["step"] == CONFIG.steps
    assert _same(r0["model"], r1["model"]) and _same(r0["ema"], r1["ema"])
    assert r0["loss"] == r1["loss"]                          # the mean over ranks, read back on both


def test_ranks_trained_on_different_batches(two_ranks, digits):
    (r0, _), _ = two_ranks
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(CONFIG, data=digits, model_config=MICRO, device="cpu", seed=0, progress=False)
    finally:
        torch.set_num_threads(n)
    assert not _same(r0["model"], single.model.state_dict())


def test_loss_falls(two_ranks):
    (r0, _), _ = two_ranks
    loss = r0["loss"]
    assert len(loss) == CONFIG.steps and all(math.isfinite(v) for v in loss)
    first, last = sum(loss[:20]) / 20, sum(loss[-20:]) / 20
    assert last < 0.5 * first, (first, last)


def test_rank_zero_writes_the_checkpoint(two_ranks):
    (r0, _), folder = two_ranks
    ckpt = load_checkpoint(folder / "ddp.pt")
    assert ckpt["step"] == CONFIG.steps and ckpt["rng"]["world_size"] == WORLD
    assert _same(ckpt["ema"], r0["ema"])
    assert sorted(p.name for p in folder.iterdir()) == ["ddp.pt", "rank0.pt", "rank1.pt"]   # no stray files


def test_a_time_budget_stops_both_ranks_at_the_same_step(tmp_path):
    r0, r1 = _run_two(tmp_path, replace(CONFIG, steps=10**6, max_seconds=4.0))
    assert r0["stopped_by"] == r1["stopped_by"] == "time"
    assert r0["step"] == r1["step"] > 0 and _same(r0["model"], r1["model"])


def test_shard_splits_like_distributed_sampler():
    images = torch.arange(11.0).reshape(11, 1, 1, 1)
    parts = [shard(images, World(r, 3, r)) for r in range(3)]
    assert [p.flatten().tolist() for p in parts] == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert shard(images, World()) is images
    with pytest.raises(ValueError, match="3 processes"):
        shard(images[:2], World(0, 3, 0))
