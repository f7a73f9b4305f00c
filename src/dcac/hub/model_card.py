"""The model card (``README.md``) that ``dcac push`` uploads with a run: protocol, metrics, preprocessing, citation.

Everything on the card is read from the run folder (``config.yaml``, ``run_info.json``, ``metrics.json``,
``verification.json``),
so the card states what the run did, not what it was meant to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcac.config import DCACConfig
from dcac.config.compat import eval_interpolation
from dcac.storage.run_folder import METRICS, RUN_INFO, VERIFICATION

CITATION = """@article{li2025unleashing,
  title={Unleashing the Potential of Pre-Trained Diffusion Models for Generalizable Person Re-Identification},
  author={Li, Jiachen and Gong, Xiaojin},
  journal={arXiv preprint arXiv:2502.06619},
  year={2025}
}"""

_METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP")


def _metrics_table(metrics: dict[str, Any], reranked: bool) -> str:
    targets = metrics.get("targets") or {}
    if not targets:
        return "No evaluation was recorded for this run (`metrics.json` is missing or empty).\n"
    header = "| target | " + " | ".join(_METRICS) + " |\n|---|" + "---|" * len(_METRICS) + "\n"
    rows = "".join(
        f"| {name} | "
        + " | ".join(f"{values[k]:.1f}" if isinstance(values.get(k), (int, float)) else "-" for k in _METRICS)
        + " |\n"
        for name, values in targets.items()
    )
    rerank = "k-reciprocal re-ranking" if reranked else "no re-ranking"
    return f"After epoch {metrics.get('epoch', '?')}, single query, {rerank}, in percent:\n\n{header}{rows}"


def _verification_section(calibration: dict[str, Any], repo_id: str) -> str:
    """The stored same/different threshold (``dcac calibrate``), when the run has one."""
    if not isinstance(calibration.get("threshold"), (int, float)):
        return ""
    feature = "after" if calibration.get("after_bn", True) else "before"
    metric = {"euclidean": "squared Euclidean"}.get(calibration.get("metric"), calibration.get("metric", "?"))
    return f"""## Same person or not?

Calibrated on {calibration.get("target", "?")}: same person if the {metric} distance
(feature {feature} the BNNeck) is below **{calibration["threshold"]:.6g}**, which gave FPR
{calibration.get("fpr", float("nan")):.2e} (target {calibration.get("fpr_target", "?")}) at TPR
{100 * calibration.get("tpr", float("nan")):.1f} % there; EER {100 * calibration.get("eer", float("nan")):.1f} %.
`dcac.compare(image_a, image_b, "{repo_id}")` uses this threshold. On other cameras, calibrate again.

"""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def model_card(
    run_dir: str | Path, repo_id: str, config: DCACConfig, feat_dim: int, mean: list[float], std: list[float]
) -> str:
    """The Markdown model card (with the Hub's YAML header) of the run in ``run_dir``, from plain values."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / RUN_INFO)
    metrics = _read_json(run_dir / METRICS)
    sources = info.get("sources") or list(config.data.sources)
    method = (
        "Baseline (no diffusion teacher)"
        if config.conditioning.variant == "none"
        else f"DCAC ({config.conditioning.variant} conditioning)"
    )
    tags = "\n".join(f"- {t}" for t in ("person-re-identification", "image-feature-extraction", "dcac"))
    return f"""---
library_name: dcac
pipeline_tag: image-feature-extraction
tags:
{tags}
---

# {repo_id.split("/")[-1]}

A person re-identification model trained with dcac — {method}, CLIP ViT encoder
(`{config.encoder.preset}`) — for domain generalisation: trained on the source domain(s) only and
evaluated on unseen target domains.

## Protocol

- training data (sources): {", ".join(sources)} ({info.get("num_ids", "?")} identities, {info.get("num_cams", "?")} cameras)
- evaluated on (targets): {", ".join(config.data.targets)}
- epochs: {config.optim.epochs}

## Results

{_metrics_table(metrics, config.eval.rerank)}
{_verification_section(_read_json(run_dir / VERIFICATION), repo_id)}## Preprocessing and output

- input: an RGB person crop, resized to {config.data.height}×{config.data.width} (height × width, aspect ratio not
  kept) with {eval_interpolation(config)} interpolation, scaled to [0, 1], then normalised with mean {mean} and std
  {std}
- output: a {feat_dim}-d feature (`f_bn`, after the BNNeck), L2-normalised; compare with squared Euclidean
  distance (= 2 − 2·cos)
- `dcac export` writes an ONNX graph for trackers (BoxMOT's sidecar); `--input raw` one for uint8 crops of any size

## Use

```python
import dcac

model = dcac.load("{repo_id}")            # fetched into the Hugging Face cache
features = model.extract(["person.jpg"])  # N × {feat_dim}, L2-normalised
```

## Citation

```bibtex
{CITATION}
```
"""
