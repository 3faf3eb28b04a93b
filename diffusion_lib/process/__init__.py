"""The math of the diffusion process, as the papers write it: schedules (beta, alpha, alpha_bar on the
paper's index t = 0..T), the forward process q, the posterior q(x_{t-1} | x_t, x_0) and the
eps-parametrisation, and the variational bound. Notebooks 01-03 derive every line of it.
Within the package: schedules.py <- forward.py, posterior.py <- elbo.py."""
