"""P x K identity batch sampler (P identities, K images each), single-process or distributed.

Epoch plan (the scheme of CLIP-ReID's ``RandomIdentitySampler``, made exact and reproducible):
1. every identity's image indices are shuffled; an identity with fewer than K images is first drawn with
   replacement up to K; the list is cut into chunks of K and a last partial chunk is dropped, so identity
   i contributes ``max(1, floor(n_i / K))`` chunks;
2. while at least P identities still have chunks, P of them are drawn uniformly without replacement and
   each gives its next chunk: one global batch of ``P * K = batch_size`` indices;
3. chunks left over when fewer than P identities remain are dropped for this epoch.
The plan is a pure function of ``(seed, epoch)``, so ``len(sampler)`` is the exact number of steps and
every rank computes the same global plan.

Distributed: ``batch_size`` is the global batch. Rank r takes identities r, r + world_size, ... of each
global batch (``batch_size / world_size`` indices), so ranks see disjoint identities, all ranks make the
same number of steps, and the union of the ranks' batches is the single-process batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices: P identities x K instances per (global) batch, sharded by rank."""

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instances: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances ({num_instances})"
            )
        self.num_identities_per_batch = batch_size // num_instances
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if self.num_identities_per_batch % world_size:
            raise ValueError(
                f"identities per batch P = batch_size / num_instances = {self.num_identities_per_batch} "
                f"must be divisible by world_size ({world_size})"
            )
        self.indices_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.indices_by_pid[int(pid)].append(index)
        if len(self.indices_by_pid) < self.num_identities_per_batch:
            raise ValueError(
                f"{len(self.indices_by_pid)} identities cannot fill a batch of "
                f"P = {self.num_identities_per_batch} identities"
            )
        self.batch_size, self.num_instances = batch_size, num_instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self._plan_cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan the next iteration follows (call before each epoch)."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """The full (all-rank) batch sequence of the current epoch."""
        if self._plan_cache is None or self._plan_cache[0] != self.epoch:
            self._plan_cache = (self.epoch, self._plan(self.epoch))
        return self._plan_cache[1]

    def _plan(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        k = self.num_instances
        chunks: dict[int, list[list[int]]] = {}
        for pid in sorted(self.indices_by_pid):
            indices = self.indices_by_pid[pid]
            drawn = rng.choice(indices, size=k, replace=True) if len(indices) < k else rng.permutation(indices)
            chunks[pid] = [drawn[i : i + k].tolist() for i in range(0, len(drawn) - k + 1, k)]
        available = sorted(chunks)
        batches = []
        while len(available) >= self.num_identities_per_batch:
            chosen = rng.choice(len(available), size=self.num_identities_per_batch, replace=False)
            pids = [available[i] for i in chosen]
            batches.append([index for pid in pids for index in chunks[pid].pop()])
            available = [pid for pid in available if chunks[pid]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        k, step = self.num_instances, self.world_size
        for batch in self.global_batches():
            identity_chunks = [batch[i : i + k] for i in range(0, len(batch), k)]
            yield [index for chunk in identity_chunks[self.rank :: step] for index in chunk]

    def __len__(self) -> int:
        return len(self.global_batches())
