"""Prototypical contrastive loss (PCL) with an identity memory (the paper's L_pcl).

The memory ``M`` holds one unit vector per training identity. It is rebuilt from the features of every
training image at the start of each epoch, used as the weight of a cosine classifier with temperature T
(``L_pcl = CE(M v / T, y)``), and moved towards the current batch after every step with momentum ``m``
(cluster-contrast's ``ClusterMemory`` update: "hard" -- per identity, the batch sample least similar
to its prototype -- or "mean" -- every sample in turn).

One object owns all of it: ``memory(features, labels)`` is the loss training uses, ``memory.update`` the
step after each batch and ``memory.rebuild`` the start of each epoch; T, m and the update mode are set once
at construction.

The memory is kept in float32 whatever the feature dtype: under autocast the features may be float16 or
bfloat16, and the small momentum steps and the division by T = 0.01 need full precision. The official code
computes the logits in float16 (autocast); ``logits_dtype=torch.float16`` reproduces that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcac.config.choices import PCL_MOMENTUM, PCL_TEMPERATURE, PCL_UPDATE, PCL_UPDATE_MODES


class PrototypeMemory(nn.Module):
    """An ``num_ids x dim`` memory of unit identity prototypes (buffer ``features``, float32) and its loss."""

    features: torch.Tensor

    def __init__(
        self,
        num_ids: int,
        dim: int,
        *,
        temperature: float = PCL_TEMPERATURE,
        momentum: float = PCL_MOMENTUM,
        update_mode: str = PCL_UPDATE,
        logits_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if num_ids <= 0 or dim <= 0:
            raise ValueError(f"PrototypeMemory needs num_ids > 0 and dim > 0, got {num_ids}, {dim}")
        if temperature <= 0:
            raise ValueError(f"memory temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"memory momentum must lie in [0, 1], got {momentum}")
        if update_mode not in PCL_UPDATE_MODES:
            raise ValueError(f"memory update mode must be one of {PCL_UPDATE_MODES}, got {update_mode!r}")
        self.temperature = temperature
        self.momentum = momentum
        self.update_mode = update_mode
        self.logits_dtype = logits_dtype
        # A buffer, not a parameter: it is never trained by gradients, but it is saved with the
        # model so a resumed run continues from the same prototypes.
        self.register_buffer("features", torch.zeros(num_ids, dim, dtype=torch.float32))

    def extra_repr(self) -> str:
        return (
            f"num_ids={self.num_ids}, dim={self.dim}, temperature={self.temperature}, momentum={self.momentum}, "
            f"update_mode={self.update_mode}, logits_dtype={self.logits_dtype}"
        )

    @property
    def num_ids(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @torch.no_grad()
    def rebuild(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Set every prototype to the re-normalised mean of its identity's L2-normalised features."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be (n, {self.dim}), got {tuple(features.shape)}")
        if labels.shape != features.shape[:1]:
            raise ValueError(f"labels must be ({features.shape[0]},), got {tuple(labels.shape)}")
        labels = labels.to(self.features.device).long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_ids):
            raise ValueError(f"labels must lie in [0, {self.num_ids}), got [{int(labels.min())}, {int(labels.max())}]")
        counts = torch.bincount(labels, minlength=self.num_ids)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            raise ValueError(
                f"cannot rebuild the memory: {empty.numel()} of {self.num_ids} identities have no "
                f"feature (e.g. ids {empty[:10].tolist()})"
            )
        unit = F.normalize(features.to(self.features.device, torch.float32), dim=1)
        sums = torch.zeros_like(self.features).index_add_(0, labels, unit)
        self.features.copy_(F.normalize(sums / counts.unsqueeze(1), dim=1))

    def logits(self, v_normalized: torch.Tensor) -> torch.Tensor:
        """Cosine logits ``M v / T`` (B x N_ids) for already L2-normalised ``v`` (B x dim), in ``logits_dtype``."""
        # Autocast would run this matmul in half precision; the memory and the 1/T = 100 scaling
        # are kept in float32 (unless asked otherwise), while gradients still flow back into a half-precision ``v``.
        with torch.autocast(device_type=v_normalized.device.type, enabled=False):
            dtype = self.logits_dtype
            return (v_normalized.to(dtype) @ self.features.to(dtype).t()) / self.temperature

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``L_pcl = CE(M v / T, y)`` averaged over the batch, ``v`` the L2-normalised ``features``."""
        return F.cross_entropy(self.logits(F.normalize(features.float(), dim=1)).float(), labels)

    @torch.no_grad()
    def update(self, v: torch.Tensor, labels: torch.Tensor) -> None:
        """Move the prototypes of the batch's identities towards the batch (``v`` normalised here).

        ``hard``: per identity, the sample with the lowest similarity to ``M[y]`` (ties: the first in
        the batch) gives ``M[y] ← normalise(m·M[y] + (1−m)·v_hard)``. ``mean``: the same step applied
        for every sample in batch order, so an identity with K samples moves K times.
        """
        momentum = self.momentum
        v = F.normalize(v.detach().to(self.features.device, torch.float32), dim=1)
        labels = labels.to(self.features.device).long()
        if self.update_mode == "hard":
            similarity = (v * self.features[labels]).sum(dim=1)
            # Stable sort by similarity, then stable sort by identity: each identity's run starts at
            # its least-similar sample, the earliest in the batch on ties.
            by_similarity = torch.argsort(similarity, stable=True)
            order = by_similarity[torch.argsort(labels[by_similarity], stable=True)]
            sorted_labels = labels[order]
            run_start = _run_start_positions(sorted_labels)
            # Every sample of an identity writes its identity's row, all with the value computed at the run
            # start: no boolean selection (whose data-dependent size would make a GPU wait for the host).
            moved = momentum * self.features[sorted_labels] + (1.0 - momentum) * v[order[run_start]]
            self.features[sorted_labels] = F.normalize(moved, dim=1)[run_start]
            return
        # "mean": sorted stably by identity, each identity's samples form a run in batch order. The
        # k-th samples of different identities do not interact, so round k updates them together;
        # running the rounds in order reproduces the sample-by-sample update exactly.
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        position = torch.arange(len(order), device=order.device)
        rank = position - _run_start_positions(sorted_labels)
        for k in range(int(rank.max()) + 1 if len(order) else 0):
            in_round = rank == k
            self._step(sorted_labels[in_round], v[order[in_round]], momentum)

    def _step(self, ids: torch.Tensor, targets: torch.Tensor, momentum: float) -> None:
        """One momentum step for distinct ``ids`` towards unit ``targets``, then re-normalise."""
        moved = momentum * self.features[ids] + (1.0 - momentum) * targets
        self.features[ids] = F.normalize(moved, dim=1)


def _run_start_positions(sorted_labels: torch.Tensor) -> torch.Tensor:
    """For each position of a sorted label vector, the first position of its run of equal values."""
    starts = torch.ones_like(sorted_labels, dtype=torch.bool)
    starts[1:] = sorted_labels[1:] != sorted_labels[:-1]
    position = torch.arange(len(sorted_labels), device=sorted_labels.device)
    return torch.cummax(torch.where(starts, position, 0), dim=0).values
