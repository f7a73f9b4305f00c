"""dcac.engine."""
