"""Plumbing shared by the whole library: argument checks (validate.py), the device picker
(devices.py), atomic file writes (files.py). Imports nothing else of diffusion_lib."""
