"""dcac: domain-generalizable person re-identification with a diffusion teacher (DCAC, Li & Gong 2025).

    import dcac
    model = dcac.load("runs/demo/dcac")          # a trained run folder
    feats = model.extract("path/to/images")      # L2-normalised Re-ID features
    indices, distances = dcac.rank(query_feats, gallery_feats, topk=10)
"""

__version__ = "0.1.0"

from dcac.api import load, rank  # noqa: E402  (the version must exist before submodules import it)

__all__ = ["__version__", "load", "rank"]
