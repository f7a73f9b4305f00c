"""dcac.models."""
