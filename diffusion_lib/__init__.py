"""diffusion_lib: DDPM and DDIM from first principles, the library of an open course.

Time index = the paper's: t in 0..T, x_0 is data, schedule arrays have length T+1 with index 0
the clean state (process/schedules.py). The DDIM paper's alpha_t is DDPM's alpha_bar_t.

The parts (docs/design.md), each importing only those before it:
    utils      argument checks, device picker, atomic writes
    process    schedules, forward process, posterior, ELBO         (the math; notebooks 01-03)
    model      the U-Net eps_theta and its fast-inference wrapper  (notebook 04)
    data       digits, MNIST, photographs, toy laws
    samplers   DDPM, DDIM, inversion, interpolation, DPM-Solver++, (notebooks 05-09)
               classifier-free guidance
    metrics    FD with its floor, bits/dim
    training   configs and presets, the loop, run state, checkpoints, torchrun
    course     the notebooks' checks, pictures and exercises (never imported by the rest)
"""
from .process.schedules import (Schedule, cosine_schedule, gather, linear_schedule, reverse_variance,
                                scaled_linear_schedule)
from .process.forward import q_sample, q_step
from .process.posterior import mean_from_eps, posterior_mean_var, predict_eps, predict_x0
from .process.elbo import (bits_per_dim, decoder_nll, discretized_gaussian_log_likelihood, elbo_terms,
                           normal_kl, prior_kl, simple_loss, simple_loss_weights, step_kl)
from .model.unet import UNet, UNetConfig, model_summary, timestep_embedding, unet_config_for
from .data import load_dataset
from .data.toy import GaussianMixture, gaussian
from .samplers.ddpm import ddpm_sample, ddpm_step
from .samplers.ddim import ddim_invert, ddim_sample, ddim_sigma, ddim_step, ddim_timesteps
from .samplers.dpm_solver import dpm_solver_sample
from .samplers.guidance import guided
from .samplers.thresholding import thresholded
from .samplers.interpolate import lerp, slerp
from .training.config import PRESETS, TrainConfig
from .training.loop import NonFiniteLossError, TrainResult, loss_on_batch, train
from .utils.version import __version__
from .training.checkpoint import CheckpointError, export_ema, load_checkpoint, load_model, save_checkpoint


__all__ = [
    "Schedule", "linear_schedule", "scaled_linear_schedule", "cosine_schedule", "gather", "reverse_variance",
    "q_step", "q_sample",
    "posterior_mean_var", "predict_x0", "predict_eps", "mean_from_eps",
    "normal_kl", "prior_kl", "step_kl", "decoder_nll", "discretized_gaussian_log_likelihood",
    "bits_per_dim", "simple_loss", "simple_loss_weights", "elbo_terms",
    "UNet", "UNetConfig", "model_summary", "timestep_embedding", "unet_config_for",
    "load_dataset", "GaussianMixture", "gaussian",
    "ddpm_step", "ddpm_sample",
    "ddim_timesteps", "ddim_sigma", "ddim_step", "ddim_sample", "ddim_invert",
    "dpm_solver_sample",
    "guided", "thresholded",
    "slerp", "lerp",
    "TrainConfig", "PRESETS", "TrainResult", "NonFiniteLossError", "loss_on_batch", "train",
    "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "export_ema",
]
