"""Internals of the sort-free ranking that its public callers rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcac.evaluation.match_ranks import (
    _NONZERO_SPARSE_DENSITY,
    _PADDING_PAYS_DENSITY,
    _TASK_ELEMENTS,
    GalleryIndex,
    _candidate_positions,
    _dense_loop_padding,
    _sparse_nonzero,
    _task_bounds,
    match_ranks,
    max_block_rows,
)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000, 4099])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_sparse_nonzero_equals_nonzero(size, density):
    mask = torch.rand(size, generator=torch.Generator().manual_seed(size)) < density
    assert torch.equal(_sparse_nonzero(mask), torch.nonzero(mask).squeeze(1))
    if size > 3:  # a view that does not start on an 8-byte boundary
        assert torch.equal(_sparse_nonzero(mask[3:]), torch.nonzero(mask[3:]).squeeze(1))


# Densities below, inside and above the band (3 %, 10 %] in which the mask is padded; 0 and 1 at the ends.
@pytest.mark.parametrize("density", [0.0, 0.01, 0.03, 0.031, 0.06, 0.0999, 0.1, 0.15, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (40, 997)])
def test_candidate_positions_equal_flatnonzero_of_the_mask(density, shape):
    rng = np.random.default_rng(shape[1])
    dist = rng.random(shape, dtype=np.float32)
    # each row's threshold is its own quantile, so the density is exact per row; ties with the threshold count
    worst = (
        np.quantile(dist, density, axis=1, method="inverted_cdf").astype(np.float32)
        if density
        else np.full(shape[0], -1.0, np.float32)
    )
    expected = np.flatnonzero(dist <= worst[:, None])
    got = _candidate_positions(dist, worst)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size", [1, 9, 100, 997, 1 << 21, 3 * (1 << 21) + 5])
def test_padding_takes_the_mask_just_past_the_sparse_density(size):
    for count in range(0, size + 1, max(1, size // 4000)):
        padding = _dense_loop_padding(size, count)
        if _PADDING_PAYS_DENSITY * size < count <= _NONZERO_SPARSE_DENSITY * size:
            assert (count + padding) / (size + padding) > _NONZERO_SPARSE_DENSITY  # numpy's own test, in double
            assert padding <= size // 9 + 1  # the room _candidate_positions leaves after the mask
            assert (count + padding - 1) / (size + padding - 1) <= _NONZERO_SPARSE_DENSITY + 1e-6  # no more than needed
        else:
            assert padding == 0


def test_ranks_count_valid_entries_before_each_match():
    # gallery: pid 1 at cams 1, 0 (junk for a cam-0 query), 2; distractors between them
    g_pids = torch.tensor([0, 1, 1, 0, 1, 2])
    g_cams = torch.tensor([1, 1, 0, 2, 2, 1])
    dist = torch.tensor([[0.1, 0.3, 0.0, 0.2, 0.3, 0.05]])
    ranks = match_ranks(dist, torch.tensor([1]), torch.tensor([0]), GalleryIndex.build(g_pids, g_cams))
    # valid order: g2 is junk; 0.05(g5) 0.1(g0) 0.2(g3) 0.3(g1) 0.3(g4): matches at 3 and 4 (tie by index)
    assert ranks.num_matches.tolist() == [2]
    assert ranks.ranks.tolist() == [[3, 4]]


def test_rows_per_block_leave_room_for_the_key():
    assert max_block_rows(torch.float32, 82161) == 1 << (63 - 32 - 17)
    assert max_block_rows(torch.float64, 82161) == 1 << 31


def brute_force_ranks(dist, q_pids, q_cams, g_pids, g_cams):
    """Per query: positions of its matches in the stable argsort of its row, junk removed."""
    ranks = []
    for row in range(dist.shape[0]):
        order = np.argsort(dist[row], kind="stable")
        keep = ~((g_pids[order] == q_pids[row]) & (g_cams[order] == q_cams[row]))
        ranks.append(np.flatnonzero((g_pids[order] == q_pids[row])[keep]))
    return ranks


def assert_ranks_equal_brute_force(dist, q_pids, q_cams, g_pids, g_cams, threads):
    """match_ranks on ``threads`` torch threads gives each query the ranks of :func:`brute_force_ranks`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = match_ranks(dist, q_pids, q_cams, GalleryIndex.build(g_pids, g_cams))
    finally:
        torch.set_num_threads(previous)
    expected = brute_force_ranks(*(t.numpy() for t in (dist, q_pids, q_cams, g_pids, g_cams)))
    assert got.num_matches.tolist() == [r.size for r in expected]
    for row, ranks in enumerate(expected):
        assert got.ranks[row, : ranks.size].tolist() == ranks.tolist()


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
@pytest.mark.parametrize(("num_rows", "num_gallery"), [(1123, 15913), (1458, 82161), (5, 100), (7, 1 << 22), (1, 3)])
def test_tasks_are_equal_bounded_and_a_multiple_of_the_workers(num_rows, num_gallery, workers):
    bounds = _task_bounds(num_rows, num_gallery, workers)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == num_rows and sizes.min() >= 1
    assert sizes.max() - sizes.min() <= 1
    assert sizes.max() == 1 or sizes.max() * num_gallery <= _TASK_ELEMENTS + num_gallery  # one row over at most
    # Every thread gets as many tasks as the others, unless there are fewer rows than threads that would need.
    assert sizes.size % workers == 0 or sizes.size == num_rows


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_cpu_pass_over_many_tasks_equals_brute_force(threads):
    # A gallery wider than one task's distances: every row is its own task (and with two threads the
    # tasks run in the pool).
    gen = torch.Generator().manual_seed(threads)
    num_gallery = (1 << 20) + 5
    g_pids = torch.randint(1, 2000, (num_gallery,), generator=gen)
    g_cams = torch.randint(0, 3, (num_gallery,), generator=gen)
    q_pids, q_cams = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 0])
    # 4,096 distinct values (ties with matches in every row), negatives and signed zeros.
    dist = torch.randint(-1024, 3072, (4, num_gallery), generator=gen).float() / 4096
    dist[:, ::7] = -0.0
    assert_ranks_equal_brute_force(dist, q_pids, q_cams, g_pids, g_cams, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_cell_table_counting_equals_brute_force_across_row_scales(threads):
    # Rows of one task whose value ranges differ by many orders of magnitude (so most rows get few
    # cells and share them with their matches), rows of a single repeated value (shift 0, every
    # candidate in a match's cell), negative rows, signed zeros, and identities with many matches
    # (several matches per cell): the table and the shared-cell search must agree with a stable argsort.
    gen = torch.Generator().manual_seed(7 + threads)
    num_gallery, num_queries = 3001, 1500  # 4.5M distances: 3 tasks of 500 rows (one thread), 4 of 375 (two)
    g_pids = torch.randint(1, 40, (num_gallery,), generator=gen)
    g_cams = torch.randint(0, 4, (num_gallery,), generator=gen)
    q_pids = torch.randint(1, 40, (num_queries,), generator=gen)
    q_cams = torch.randint(0, 4, (num_queries,), generator=gen)
    scale = 10.0 ** torch.randint(-30, 30, (num_queries, 1), generator=gen).float()
    dist = torch.rand(num_queries, num_gallery, generator=gen) * scale
    dist[::5] = torch.randint(0, 3, (dist[::5].shape), generator=gen).float()  # heavy ties
    dist[1::7] -= 0.5 * scale[1::7]  # negative and positive values in one row
    dist[2::11] = 0.25  # one value per row
    dist[:, ::13] = -0.0
    assert_ranks_equal_brute_force(dist, q_pids, q_cams, g_pids, g_cams, threads)
