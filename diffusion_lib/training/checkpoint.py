"""Checkpoints: written atomically, read only with torch.load(weights_only=True), checked on load.

A checkpoint is a dict of tensors and plain Python values (no pickled classes):

    format, format_version        "diffusion_lib checkpoint", 1
    library_version               diffusion_lib.__version__ of the writer
    unet_config, train_config     UNetConfig.to_dict(), TrainConfig.to_dict() (train_config may be None)
    schedule                      {"name": str, "T": int, "betas": float64 (T+1,)}
    data                          {"name": str, "split": str, "shape": [C, H, W], "levels": int}
    ema                           state_dict of the EMA weights (what you sample with)
    step, seed                    optimizer steps taken; the seed the run started from
    model, optimizer, rng         raw weights, AdamW state, generator states: needed to resume;
                                  None in an exported (EMA-only) file
    history                       {"loss": float32 (step,)}: L_simple at every step
    elapsed_seconds               training time so far

run_state.py builds this dict from a training run (RunState.to_checkpoint) and restores a run from
it (restore). Saving: a temporary file in the target folder, flush, fsync, then os.replace, so an interrupted
save never leaves a broken file where a good one was. Loading: weights_only=True refuses any
pickle that would run code; every failure raises CheckpointError naming the file and the problem.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..utils.files import atomic_write

FORMAT, FORMAT_VERSION = "diffusion_lib checkpoint", 1
REQUIRED = ("format", "format_version", "library_version", "unet_config", "schedule", "data", "ema", "step")
RESUMABLE = ("model", "optimizer", "rng", "train_config")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, not ours, or does not fit what was asked."""


def save_checkpoint(ckpt: dict, path) -> Path:
    """Write `ckpt` to `path` atomically (utils.files.atomic_write: temporary file, fsync, os.replace)."""
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read and validate a checkpoint; raises CheckpointError with the reason (never runs pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy? train again or "
                              f"restore it")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} was refused: it is not a diffusion_lib checkpoint or it "
                              f"holds Python objects that safe loading (weights_only=True) will not run "
                              f"({first[:160]})") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be opened: {e.strerror or e}") from None
    except Exception as e:                  # zip, EOF, legacy-format and memo errors all mean "unreadable"
        raise CheckpointError(f"checkpoint {path} cannot be read: the file is truncated, corrupt or not a "
                              f"PyTorch file ({type(e).__name__}: {str(e).strip()[:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a diffusion_lib checkpoint "
                              f"(no 'format': {FORMAT!r} entry)")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it lacks {', '.join(missing)}")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['format_version']}; this "
                              f"diffusion_lib reads version {FORMAT_VERSION}")
    return ckpt


def is_resumable(ckpt: dict) -> bool:
    """True when the checkpoint holds what resuming needs (an exported EMA-only file does not)."""
    return all(ckpt.get(k) is not None for k in RESUMABLE)


def check_resumable(ckpt: dict, path, train_config: dict, unet_config: dict, data: dict, device_type: str,
                    ignore=()) -> None:
    """Raise CheckpointError unless training can continue from `ckpt` with these settings."""
    if not is_resumable(ckpt):
        raise CheckpointError(f"{path} holds EMA weights only (an exported file): it can be sampled, not resumed")
    check_matches(ckpt, "train_config", train_config, path, ignore=ignore)
    check_matches(ckpt, "unet_config", unet_config, path)
    check_matches(ckpt, "data", data, path)
    if ckpt["rng"].get("device") != device_type:
        raise CheckpointError(f"{path} was trained on {ckpt['rng'].get('device')}; resume it there (its random "
                              f"state is for that device), not on {device_type}")


def check_matches(ckpt: dict, what: str, expected: dict, path="checkpoint", ignore=()) -> None:
    """Raise CheckpointError naming every field where ckpt[what] differs from `expected`."""
    stored = ckpt.get(what)
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path} holds no {what}")
    keys = sorted((set(stored) | set(expected)) - set(ignore))
    diff = [f"{k}={stored.get(k, '<missing>')!r} (asked: {expected.get(k, '<missing>')!r})"
            for k in keys if stored.get(k, "<missing>") != expected.get(k, "<missing>")]
    if diff:
        raise CheckpointError(f"{path} does not match: its {what} has " + ", ".join(diff))


def load_weights(module: torch.nn.Module, state_dict, what: str, path="checkpoint") -> None:
    """module.load_state_dict(state_dict) with a short message when names or shapes differ."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} holds no {what} weights")
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    extra = sorted(set(state_dict) - set(own))
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
        raise CheckpointError(f"the {what} weights in {path} do not fit this model (a different UNetConfig?): "
                              + "; ".join(p for p in parts if p))
    module.load_state_dict(state_dict)


def schedule_from(ckpt: dict, path="checkpoint"):
    """The Schedule stored in a checkpoint (its float64 betas, exactly)."""
    from ..process.schedules import Schedule

    s = ckpt["schedule"]
    try:
        schedule = Schedule(s["betas"], name=s["name"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} holds an unusable schedule: {e}") from None
    if schedule.T != s.get("T"):
        raise CheckpointError(f"{path}: schedule T={s.get('T')} but {schedule.T} betas after beta_0")
    return schedule


def load_model(path, device=None):
    """(ema_model, schedule, info) from a checkpoint, ready to sample: eval mode, no gradients.

    ema_model: a UNet with the EMA weights on `device` (default: pick_device());
    schedule: the Schedule it was trained with;  info: dict with data (name, shape, levels),
    step, history (loss per step), unet_config, train_config, library_version, summary, path,
    num_classes (0: unconditional) and p_uncond (the label dropout it was trained with; None if none).
    info["data"]["name"], ["shape"] and ["levels"] say what to sample and how to score it.
    Use: ddim_sample(ema_model, (16, *info["data"]["shape"]), schedule, steps=50, generator=g);
    a conditional model: ddim_sample(guided(ema_model, y, w), ...) (samplers/guidance.py).
    """
    from ..utils.devices import pick_device
    from ..model.unet import UNet, UNetConfig, model_summary

    ckpt = load_checkpoint(path)
    try:
        config = UNetConfig.from_dict(ckpt["unet_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} holds an unusable UNetConfig: {e}") from None
    p_uncond = _label_dropout(ckpt, config, path)
    model = UNet(config)
    load_weights(model, ckpt["ema"], "EMA", path)
    model.to(pick_device(device)).eval().requires_grad_(False)
    history = ckpt.get("history") or {}
    info = {"path": str(path), "step": ckpt["step"], "data": dict(ckpt["data"]),
            "unet_config": config, "train_config": ckpt.get("train_config"),
            "library_version": ckpt["library_version"], "seed": ckpt.get("seed"),
            "history": {k: torch.as_tensor(v).tolist() for k, v in history.items()},
            "summary": model_summary(model)[1], "resumable": is_resumable(ckpt),
            "num_classes": config.num_classes, "p_uncond": p_uncond}
    return model, schedule_from(ckpt, path), info


def _label_dropout(ckpt: dict, config, path) -> float | None:
    """The p_uncond a conditional model was trained with (its null label is only meaningful if it was
    trained); raises CheckpointError when the UNetConfig and the TrainConfig disagree about labels."""
    train = ckpt.get("train_config") or {}
    conditional = bool(train.get("conditional", False))
    if train and conditional != bool(config.num_classes):
        raise CheckpointError(f"{path} is inconsistent: its UNetConfig has num_classes = {config.num_classes} but "
                              f"its TrainConfig has conditional = {conditional}")
    return float(train["p_uncond"]) if conditional else None


def export_ema(src, dst) -> Path:
    """Copy a checkpoint keeping what sampling needs (EMA weights, configs, schedule, data, history):
    the small file a course ships. It can be loaded with load_model but not resumed."""
    ckpt = load_checkpoint(src)
    small = dict(ckpt, model=None, optimizer=None, rng=None)     # train_config stays, for the record
    return save_checkpoint(small, dst)
