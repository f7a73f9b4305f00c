"""Parameters of k-reciprocal re-ranking (Zhong et al., CVPR 2017) and their named presets.

``"default"`` (alias ``"zhong"``) is the paper's and torchreid / fast-reid's 20/6/0.3;
``"dcac"`` is the 50/15/0.3 used by CLIP-ReID and the DCAC release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RerankParams", "RERANK_PRESETS", "RerankSpec", "as_rerank_params", "resolve_rerank"]


@dataclass(frozen=True)
class RerankParams:
    """``k1``: k-reciprocal neighbourhood size; ``k2``: local query expansion size;
    ``lambda_value``: weight of the original distance in the final one."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self) -> None:
        for name in ("k1", "k2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RerankParams.{name}: expected a positive int, got {value!r}")
        if isinstance(self.lambda_value, bool) or not 0.0 <= float(self.lambda_value) <= 1.0:
            raise ValueError(f"RerankParams.lambda_value: expected a number in [0, 1], got {self.lambda_value!r}")


RERANK_PRESETS: dict[str, RerankParams] = {
    "default": RerankParams(20, 6, 0.3),
    "zhong": RerankParams(20, 6, 0.3),
    "dcac": RerankParams(50, 15, 0.3),
}

RerankSpec = None | RerankParams | str | tuple | Mapping[str, Any]


def resolve_rerank(spec: RerankSpec) -> RerankParams | None:
    """``None`` → no re-ranking; a preset name, ``(k1, k2, lambda_value)``, a dict with those keys,
    or a :class:`RerankParams` → the parameters."""
    if spec is None or isinstance(spec, RerankParams):
        return spec
    if isinstance(spec, str):
        if spec not in RERANK_PRESETS:
            raise ValueError(f"rerank: unknown preset {spec!r}; expected one of {sorted(RERANK_PRESETS)}")
        return RERANK_PRESETS[spec]
    if isinstance(spec, tuple):
        if len(spec) != 3:
            raise ValueError(f"rerank: expected (k1, k2, lambda_value), got {spec!r}")
        return RerankParams(*spec)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"k1", "k2", "lambda_value"}
        if unknown:
            raise ValueError(f"rerank: unknown keys {sorted(unknown)}; expected k1, k2, lambda_value")
        return RerankParams(**spec)
    raise TypeError(f"rerank: expected None, a preset name, a tuple, a dict or RerankParams, got {type(spec).__name__}")


def as_rerank_params(spec: RerankSpec) -> RerankParams:
    """Like :func:`resolve_rerank`, for callers that always re-rank (``None`` is an error)."""
    params = resolve_rerank(spec)
    if params is None:
        raise ValueError("rerank: parameters are required (a RerankParams, preset name, tuple or dict)")
    return params
