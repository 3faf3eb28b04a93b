"""The exercises of notebooks 01-07: one check per exercise, which says whether an answer is right
and how far off it is. `from diffusion_lib.course import exercises`, then `exercises.check_...`.
grading.py holds the machinery every check uses."""
from .grading import TOL, Result, solution
from .nb01_02 import (check_alpha_bars, check_posterior_mean, check_posterior_variance, check_q_sample,
                      check_skip_variance, check_unscaled_variance, check_variance_ratio)
from .nb03 import check_normal_kl, check_simple_loss_weight, check_weight_minimum
from .nb04 import check_conv_params, check_ema_share, check_loss_on_batch
from .nb05_07 import (check_cost_ratio, check_ddim_sigma, check_ddim_step, check_ddpm_step, check_invert_step,
                      check_jump_noise, check_midpoint_norm, check_slerp)
