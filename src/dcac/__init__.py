"""dcac: domain-generalizable person re-identification with a diffusion teacher (DCAC)."""

__version__ = "0.1.0"
