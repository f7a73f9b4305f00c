"""dcac.data.datasets."""
