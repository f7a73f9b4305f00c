"""dcac.data."""
