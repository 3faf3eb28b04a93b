"""From noise to data: DDPM ancestral sampling, DDIM and its inversion, DPM-Solver++ (the probability-flow
ODE in few network calls), interpolation of codes, and drawing many samples in batches. Every sampler takes
any callable (x_t, t) -> eps_hat. loop.py holds what the sampling loops share. notebooks/05-08."""
