"""The library version: recorded in every checkpoint (training/run_state.py) and read by pyproject.toml."""
__version__ = "0.1.0"
