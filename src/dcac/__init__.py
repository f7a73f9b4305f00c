"""dcac: domain-generalizable person re-identification with a diffusion teacher (DCAC, Li & Gong 2025).

import dcac
model = dcac.load("runs/demo/dcac")          # a trained run folder
feats = model.extract("path/to/images")      # L2-normalised Re-ID features
indices, distances = dcac.rank(query_feats, gallery_feats, topk=10)

from dcac import track                        # a model as a tracker's appearance model (dcac.inference.track)

The packages: ``config`` (what a run is set to), ``data``, ``models``, ``losses``, ``engine`` (training),
``evaluation`` (scoring), ``inference`` (using a trained model), ``storage`` (run folders and checkpoints),
``hub``, ``cli``, ``demo`` and ``runtime`` (threads, one-line errors).
"""

import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "compare", "load", "rank", "track"]


def __getattr__(name: str):
    # ``load`` and ``rank`` pull in torch, transformers and the model code; importing them lazily keeps
    # ``import dcac.evaluation`` (or the CLI's --help) light.
    if name in ("load", "rank", "compare"):
        from dcac import api

        return getattr(api, name)
    if name == "track":
        # ``from dcac import track`` is the tracker API's public name; the module lives with the rest of inference
        return importlib.import_module("dcac.inference.track")
    raise AttributeError(f"module 'dcac' has no attribute {name!r}")
