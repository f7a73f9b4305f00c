"""dcac.losses."""
