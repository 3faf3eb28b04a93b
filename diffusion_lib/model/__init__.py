"""The noise-prediction network eps_theta(x_t, t): the U-Net (unet.py) and a wrapper that makes it
cheaper to call for sampling (fast.py). notebooks/04."""
