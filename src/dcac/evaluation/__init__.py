"""dcac.evaluation."""
