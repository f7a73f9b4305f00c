"""PKBatchSampler: batch structure, epoch accounting, determinism and distributed sharding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dcac.data import PKBatchSampler


@pytest.fixture
def pids() -> list[int]:
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 15, size=40)  # several identities with fewer than K images
    labels = np.repeat(np.arange(40) * 3 + 7, counts)  # non-contiguous ids
    return rng.permutation(labels).tolist()


def chunks_of(pids: list[int], k: int) -> dict[int, int]:
    sizes = Counter(pids)
    return {pid: max(1, n // k) for pid, n in sizes.items()}


@pytest.mark.parametrize("batch_size,k", [(16, 4), (24, 2), (8, 8)])
def test_batches_hold_p_identities_times_k(pids: list[int], batch_size: int, k: int) -> None:
    sampler = PKBatchSampler(pids, batch_size, k, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    p = batch_size // k
    used = Counter()
    for batch in batches:
        assert len(batch) == batch_size
        groups = [batch[i : i + k] for i in range(0, batch_size, k)]
        ids = [pids[g[0]] for g in groups]
        assert len(set(ids)) == p
        assert all(pids[index] == pid for g, pid in zip(groups, ids) for index in g)
        used.update(ids)
    # every identity gives at most its chunk count; the epoch stops when fewer than P have chunks left
    available = chunks_of(pids, k)
    assert all(used[pid] <= n for pid, n in available.items())
    assert sum(1 for pid, n in available.items() if used[pid] < n) < p
    # identities with at least K images never repeat an image within the epoch
    sizes = Counter(pids)
    seen = Counter(index for batch in batches for index in batch if sizes[pids[index]] >= k)
    assert max(seen.values()) == 1


def test_reproducible_from_seed_and_epoch(pids: list[int]) -> None:
    a, b = PKBatchSampler(pids, 16, 4, seed=1), PKBatchSampler(pids, 16, 4, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    a.set_epoch(0)
    assert list(a) == first
    assert list(PKBatchSampler(pids, 16, 4, seed=2)) != first


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_shards_are_disjoint_and_cover_the_global_batches(pids: list[int], world_size: int) -> None:
    single = PKBatchSampler(pids, 32, 4, seed=9)
    single.set_epoch(2)
    ranks = [PKBatchSampler(pids, 32, 4, seed=9, rank=r, world_size=world_size) for r in range(world_size)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shards = [list(s) for s in ranks]
    assert len({len(s) for s in ranks} | {len(shard) for shard in shards}) == 1
    for step, global_batch in enumerate(single):
        per_rank = [shard[step] for shard in shards]
        assert all(len(b) == 32 // world_size for b in per_rank)
        id_sets = [{pids[i] for i in b} for b in per_rank]
        assert sum(len(s) for s in id_sets) == len(set().union(*id_sets))  # disjoint identities
        assert sorted(i for b in per_rank for i in b) == sorted(global_batch)


def test_invalid_configurations(pids: list[int]) -> None:
    with pytest.raises(ValueError, match="multiple"):
        PKBatchSampler(pids, 10, 4)
    with pytest.raises(ValueError, match="world_size"):
        PKBatchSampler(pids, 24, 4, world_size=4)  # P = 6
    with pytest.raises(ValueError, match="rank"):
        PKBatchSampler(pids, 16, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="identities"):
        PKBatchSampler([0, 0, 1, 1], 12, 2)
