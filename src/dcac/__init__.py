"""dcac: domain-generalizable person re-identification with a diffusion teacher (DCAC, Li & Gong 2025).

import dcac
model = dcac.load("runs/demo/dcac")          # a trained run folder
feats = model.extract("path/to/images")      # L2-normalised Re-ID features
indices, distances = dcac.rank(query_feats, gallery_feats, topk=10)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "compare", "load", "rank"]


def __getattr__(name: str):
    # ``load`` and ``rank`` pull in torch, transformers and the model code; importing them lazily keeps
    # ``import dcac.evaluation`` (or the CLI's --help) light.
    if name in ("load", "rank", "compare"):
        from dcac import api

        return getattr(api, name)
    raise AttributeError(f"module 'dcac' has no attribute {name!r}")
