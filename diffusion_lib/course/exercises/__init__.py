"""The exercises of the notebooks: one check per exercise, which says whether an answer is right and how
far off it is. `from diffusion_lib.course import exercises`, then `exercises.check_...`.
One module per notebook; grading.py holds the machinery every check uses (docs/design.md, sec. 5).
"""
from .grading import TOL, Result
from .nb01 import check_alpha_bars, check_q_sample, check_unscaled_variance
from .nb02 import check_posterior_mean, check_posterior_variance, check_skip_variance, check_variance_ratio
from .nb03 import check_normal_kl, check_simple_loss_weight, check_weight_minimum
from .nb04 import check_conv_params, check_ema_share, check_loss_on_batch
from .nb05 import check_cost_ratio, check_ddpm_step, check_reverse_variance
from .nb06 import check_ddim_sigma, check_ddim_step, check_jump_noise
from .nb07 import check_invert_step, check_midpoint_norm, check_slerp
from .nb08 import check_dpm_2m_step, check_error_ratio, check_tweedie_gaussian
from .nb09 import check_guided_diversity, check_guided_eps, check_midpoint_eps
