"""evaluate_rank against a brute-force per-query reference (stable argsort, torchreid's rule)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcac.evaluation import evaluate_rank
from dcac.evaluation.match_ranks import GalleryIndex, match_ranks
from dcac.evaluation.rank_metrics import RankAccumulator, rank_block


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """torchreid's per-query loop with a stable argsort; CMC padded with its last value."""
    all_cmc, all_ap, all_inp, skipped = [], [], [], 0
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        matches = (g_pids[order] == q_pids[q])[keep].astype(np.float64)
        if not matches.any():
            skipped += 1
            continue
        cmc = np.minimum(matches.cumsum(), 1.0)
        cmc = np.concatenate([cmc, np.ones(max(0, max_rank - cmc.size))])[:max_rank]
        all_cmc.append(cmc)
        positions = np.nonzero(matches)[0]
        all_ap.append(np.mean(np.arange(1, positions.size + 1) / (positions + 1.0)))
        all_inp.append(positions.size / (positions[-1] + 1.0))
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp), len(all_ap), skipped


def assert_matches_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, **kwargs):
    got = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, **kwargs)
    cmc, m_ap, m_inp, valid, skipped = reference_rank(
        np.asarray(distmat),
        np.asarray(q_pids),
        np.asarray(g_pids),
        np.asarray(q_camids),
        np.asarray(g_camids),
        max_rank,
    )
    assert got["cmc"].shape == (max_rank,)
    np.testing.assert_allclose(got["cmc"], cmc, rtol=0, atol=1e-6)
    assert abs(got["mAP"] - m_ap) <= 1e-6
    assert abs(got["mINP"] - m_inp) <= 1e-6
    assert got["num_valid_queries"] == valid
    assert got["num_skipped_queries"] == skipped
    return got


def random_problem(rng, nq, ng, n_ids, n_cams, distractor_frac=0.0):
    g_pids = rng.integers(1, n_ids + 1, ng)
    g_pids[rng.random(ng) < distractor_frac] = 0
    q_pids = rng.integers(1, n_ids + 1, nq)
    return q_pids, g_pids, rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng)


@pytest.mark.parametrize("seed", range(6))
def test_random_continuous_distances(seed):
    rng = np.random.default_rng(seed)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 40, 300, 25, 4, distractor_frac=0.2)
    dist = rng.random((40, 300)).astype(np.float32)
    assert_matches_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_heavy_ties_broken_by_gallery_index(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 30, 200, 8, 3, distractor_frac=0.1)
    dist = rng.integers(0, 4, (30, 200)).astype(dtype)  # four distinct values: ties everywhere
    assert_matches_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_distances_and_signed_zeros(dtype):
    rng = np.random.default_rng(21)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 25, 120, 6, 3)
    dist = rng.choice(np.array([-2.5, -1e-30, -0.0, 0.0, 1e-30, 0.75, 3.0]), size=(25, 120)).astype(dtype)
    assert_matches_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)


def test_float64_values_that_round_to_the_same_float32_are_still_ordered():
    rng = np.random.default_rng(22)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 20, 150, 5, 3)
    dist = 1.0 + rng.integers(0, 3, (20, 150)) * 1e-12  # distinct in float64, equal in float32
    assert_matches_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)


def test_all_distances_equal():
    rng = np.random.default_rng(7)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 12, 60, 5, 2)
    assert_matches_reference(np.zeros((12, 60), np.float32), q_pids, g_pids, q_cams, g_cams, max_rank=10)


def test_small_chunks_and_torch_input_match_reference():
    rng = np.random.default_rng(11)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 33, 150, 12, 3, distractor_frac=0.3)
    dist = np.round(rng.random((33, 150)), 2).astype(np.float32)
    assert_matches_reference(
        torch.from_numpy(dist),
        torch.from_numpy(q_pids),
        torch.from_numpy(g_pids),
        torch.from_numpy(q_cams),
        torch.from_numpy(g_cams),
        max_rank=30,
        chunk_size=4,
    )


def test_single_image_ids_no_match_queries_and_distractors_are_counted():
    # q0: its only gallery image shares its camera -> skipped. q1: single valid image.
    # q2: identity absent from the gallery -> skipped. q3: a distractor (pid 0) is nearest.
    q_pids = np.array([1, 2, 3, 4])
    q_cams = np.array([0, 0, 0, 0])
    g_pids = np.array([1, 2, 0, 4, 4, 0])
    g_cams = np.array([0, 1, 1, 1, 0, 2])
    dist = np.array(
        [
            [0.1, 0.5, 0.2, 0.3, 0.4, 0.6],
            [0.9, 0.5, 0.2, 0.3, 0.4, 0.1],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            [0.3, 0.5, 0.0, 0.2, 0.05, 0.6],
        ]
    )
    got = assert_matches_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    assert got["num_valid_queries"] == 2 and got["num_skipped_queries"] == 2
    # q1's match is 5th of 6 valid entries; q3's match is 2nd, behind the distractor (its
    # nearer same-camera image is junk and does not count).
    np.testing.assert_allclose(got["cmc"], [0.0, 0.5, 0.5, 0.5, 1.0])
    assert got["mAP"] == pytest.approx((1 / 5 + 1 / 2) / 2)
    assert got["mINP"] == pytest.approx((1 / 5 + 1 / 2) / 2)


def test_max_rank_beyond_gallery_size_pads_with_one():
    got = assert_matches_reference(
        np.array([[0.3, 0.1, 0.2]]), np.array([1]), np.array([1, 2, 3]), np.array([0]), np.array([1, 1, 1]), max_rank=5
    )
    np.testing.assert_allclose(got["cmc"], [0, 0, 1, 1, 1])


def test_every_query_without_match_is_an_error():
    with pytest.raises(ValueError, match="none of the 2 queries"):
        evaluate_rank(np.zeros((2, 3)), np.array([1, 2]), np.array([1, 2, 3]), np.array([0, 0]), np.array([0, 0, 1]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"distmat": np.zeros(3)}, "2-D"),
        ({"q_pids": np.array([1, 2, 3])}, "q_pids: expected 2 labels"),
        ({"g_camids": np.array([0.0, 1.0, 2.0])}, "integer labels"),
        ({"distmat": np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])}, "NaN"),
        ({"max_rank": 0}, "max_rank"),
    ],
)
def test_bad_input_is_rejected(kwargs, message):
    args = dict(
        distmat=np.zeros((2, 3)),
        q_pids=np.array([1, 2]),
        g_pids=np.array([1, 2, 3]),
        q_camids=np.array([0, 0]),
        g_camids=np.array([1, 1, 1]),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        evaluate_rank(**args)


def test_rank_block_adds_slice_by_slice_like_one_call_per_slice():
    # The fused CPU path ranks many slices per match_ranks call; the float sums must still be those of
    # one call per slice, bit for bit.
    rng = np.random.default_rng(11)
    q_pids, g_pids, q_cams, g_cams = (torch.from_numpy(a) for a in random_problem(rng, 400, 300, 20, 3))
    dist = torch.from_numpy(rng.random((400, 300), dtype=np.float32))
    gallery = GalleryIndex.build(g_pids, g_cams)
    blocked, per_slice = RankAccumulator(10, dist.device), RankAccumulator(10, dist.device)
    rank_block(blocked, dist, q_pids, q_cams, gallery, step=7)
    for s in range(0, 400, 7):
        per_slice.add(match_ranks(dist[s : s + 7], q_pids[s : s + 7], q_cams[s : s + 7], gallery))
    got, expected = blocked.result(), per_slice.result()
    assert got["mAP"] == expected["mAP"] and got["mINP"] == expected["mINP"]
    assert np.array_equal(got["cmc"], expected["cmc"])


def test_distances_that_require_grad_are_ranked_by_their_values():
    rng = np.random.default_rng(12)
    q_pids, g_pids, q_cams, g_cams = random_problem(rng, 20, 100, 6, 3)
    dist = rng.random((20, 100), dtype=np.float32)
    got = evaluate_rank(torch.from_numpy(dist).requires_grad_(), q_pids, g_pids, q_cams, g_cams, max_rank=5)
    expected = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    assert got["mAP"] == expected["mAP"] and got["mINP"] == expected["mINP"]
    assert np.array_equal(got["cmc"], expected["cmc"])
