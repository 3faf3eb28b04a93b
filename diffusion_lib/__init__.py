"""diffusion_lib: DDPM and DDIM from first principles, the library of an open course.

Time index = the paper's: t in 0..T, x_0 is data, schedule arrays have length T+1 with index 0
the clean state (see schedules.py). The DDIM paper's alpha_t is DDPM's alpha_bar_t.
"""
from .ddim import ddim_invert, ddim_sample, ddim_sigma, ddim_step, ddim_timesteps
from .ddpm import ddpm_sample, ddpm_step, reverse_variance
from .elbo import (bits_per_dim, decoder_nll, discretized_gaussian_log_likelihood, elbo_terms,
                   normal_kl, prior_kl, simple_loss, simple_loss_weights, step_kl)
from .forward import q_sample, q_step
from .interpolate import lerp, slerp
from .posterior import mean_from_eps, posterior_mean_var, predict_eps, predict_x0
from .schedules import Schedule, cosine_schedule, gather, linear_schedule, scaled_linear_schedule
from .toy import GaussianMixture, gaussian
from .unet import UNet, UNetConfig, model_summary, timestep_embedding, unet_config_for
from .train import PRESETS, NonFiniteLossError, TrainConfig, TrainResult, loss_on_batch  # train(): diffusion_lib.train.train
from .checkpoint import CheckpointError, export_ema, load_checkpoint, load_model, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "Schedule", "linear_schedule", "scaled_linear_schedule", "cosine_schedule", "gather",
    "q_step", "q_sample",
    "posterior_mean_var", "predict_x0", "predict_eps", "mean_from_eps",
    "normal_kl", "prior_kl", "step_kl", "decoder_nll", "discretized_gaussian_log_likelihood",
    "bits_per_dim", "simple_loss", "simple_loss_weights", "elbo_terms",
    "reverse_variance", "ddpm_step", "ddpm_sample",
    "ddim_timesteps", "ddim_sigma", "ddim_step", "ddim_sample", "ddim_invert",
    "slerp", "lerp",
    "GaussianMixture", "gaussian",
    "UNet", "UNetConfig", "model_summary", "timestep_embedding", "unet_config_for",
    "TrainConfig", "PRESETS", "TrainResult", "NonFiniteLossError", "loss_on_batch",
    "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "export_ema",
]
