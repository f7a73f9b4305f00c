"""evaluate_features (chunked, no full distance matrix) against evaluate_rank on the dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcac.evaluation import compute_distance, evaluate_features, evaluate_rank
from dcac.evaluation.distance import distance_matmul
from dcac.evaluation.evaluate_features import _BLOCK_ELEMENTS, default_feature_chunk
from dcac.evaluation.inputs import as_feature_matrix


def labelled_features(seed, nq=60, ng=400, n_ids=30, n_cams=4, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids + 1, dim))
    q_pids, g_pids = rng.integers(1, n_ids + 1, nq), rng.integers(0, n_ids + 1, ng)
    q = centres[q_pids] + 0.8 * rng.normal(size=(nq, dim))
    g = centres[g_pids] + 0.8 * rng.normal(size=(ng, dim))
    return (
        q.astype(np.float32),
        g.astype(np.float32),
        q_pids,
        g_pids,
        rng.integers(0, n_cams, nq),
        rng.integers(0, n_cams, ng),
    )


def assert_same_metrics(a, b, tol=1e-6):
    np.testing.assert_allclose(a["cmc"], b["cmc"], rtol=0, atol=tol)
    assert abs(a["mAP"] - b["mAP"]) <= tol and abs(a["mINP"] - b["mINP"]) <= tol
    assert a["num_valid_queries"] == b["num_valid_queries"]
    assert a["num_skipped_queries"] == b["num_skipped_queries"]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [7, None])
def test_chunked_features_match_dense_ranking(metric, chunk_size):
    q, g, qp, gp, qc, gc = labelled_features(0)
    got = evaluate_features(q, g, qp, gp, qc, gc, metric=metric, normalize=True, chunk_size=chunk_size)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = evaluate_rank(compute_distance(qn, gn, metric), qp, gp, qc, gc)
    assert_same_metrics(got, expected)
    assert 0.05 < got["mAP"] < 1.0  # the features carry identity: a meaningful, non-trivial score


@pytest.mark.parametrize(
    ("num_query", "num_gallery", "dim", "expected"),
    [
        (3368, 15913, 514, 1123),  # Market-1501: sqrt(3368 * 514) = 1315 -> 3 equal blocks
        (11659, 82161, 514, 1458),  # MSMT17: capped at 2**27 // 82161 = 1633 rows -> 8 equal blocks
        (10, 30, 8, 10),  # small: one block
        (0, 30, 8, 1),
    ],
)
def test_default_feature_chunk_balances_gallery_rereads_and_buffer_size(num_query, num_gallery, dim, expected):
    rows = default_feature_chunk(num_query, num_gallery, dim)
    assert rows == expected
    blocks = -(-num_query // rows)
    assert rows * num_gallery <= max(_BLOCK_ELEMENTS, 16 * num_gallery)
    # equal blocks: the last one is short by less than one row per block
    assert blocks * rows - num_query < max(blocks, 1)


def test_euclidean_on_normalised_ranks_like_cosine():
    q, g, qp, gp, qc, gc = labelled_features(1)
    euclid = evaluate_features(q, g, qp, gp, qc, gc, metric="euclidean", normalize=True)
    cosine = evaluate_features(q, g, qp, gp, qc, gc, metric="cosine")
    assert_same_metrics(euclid, cosine, tol=1e-9)


def test_exact_ties_from_duplicate_gallery_features_follow_gallery_index():
    # Small integer features make every distance exact, so duplicates tie exactly.
    rng = np.random.default_rng(3)
    g = rng.integers(-2, 3, size=(50, 6)).astype(np.float32)
    g = np.concatenate([g, g[::-1]])  # each row appears twice, at different indices
    q = rng.integers(-2, 3, size=(20, 6)).astype(np.float32)
    gp, gc = rng.integers(0, 6, 100), rng.integers(0, 3, 100)
    qp, qc = rng.integers(1, 6, 20), rng.integers(0, 3, 20)
    dist = compute_distance(q, g)
    assert torch.equal(dist, torch.from_numpy(((q[:, None] - g[None]) ** 2).sum(-1)))
    expected = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20)
    got = evaluate_features(q, g, qp, gp, qc, gc, max_rank=20, chunk_size=3)
    assert_same_metrics(got, expected, tol=1e-12)  # same ranks; only float summation order differs


def test_compute_distance_values():
    rng = np.random.default_rng(4)
    q, g = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    np.testing.assert_allclose(compute_distance(q, g).numpy(), ((q[:, None] - g[None]) ** 2).sum(-1), atol=1e-10)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(compute_distance(q, g, "cosine").numpy(), 1 - qn @ gn.T, atol=1e-10)
    np.testing.assert_allclose(
        compute_distance(q, g, normalize=True).numpy(), ((qn[:, None] - gn[None]) ** 2).sum(-1), atol=1e-10
    )
    assert compute_distance(q.astype(np.float32), g.astype(np.float32)).dtype == torch.float32


@pytest.mark.parametrize("num_gallery", [1, 511, 512, 513, 1300])
@pytest.mark.parametrize("num_rows", [9, 70])  # below and above the rows from which the product is sliced
def test_distance_matmul_writes_every_column_slice(num_gallery, num_rows):
    gen = torch.Generator().manual_seed(num_gallery)
    a = torch.randn(num_rows, 20, generator=gen, dtype=torch.float64)
    b = torch.randn(num_gallery, 20, generator=gen, dtype=torch.float64)
    out = torch.full((num_rows + 3, num_gallery), float("nan"), dtype=torch.float64)
    got = distance_matmul(a, b, out=out[:num_rows])
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(got, a @ b.T, rtol=0, atol=1e-12)
    assert out[num_rows:].isnan().all()  # nothing written past the rows asked for


@pytest.mark.parametrize("normalize", ["no", 1, None])
def test_normalize_must_be_a_real_bool(normalize):
    q, g, qp, gp, qc, gc = labelled_features(5, nq=4, ng=10)
    with pytest.raises(TypeError, match="normalize"):
        evaluate_features(q, g, qp, gp, qc, gc, normalize=normalize)
    with pytest.raises(TypeError, match="normalize"):
        compute_distance(q, g, normalize=normalize)


def test_bad_metric_and_shapes_are_rejected():
    q, g, qp, gp, qc, gc = labelled_features(6, nq=4, ng=10)
    with pytest.raises(ValueError, match="metric"):
        evaluate_features(q, g, qp, gp, qc, gc, metric="manhattan")
    with pytest.raises(ValueError, match="feature dimensions"):
        evaluate_features(q, g[:, :3], qp, gp, qc, gc)
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_features(q, g, qp, gp[:5], qc, gc)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_features(np.full_like(q, np.nan), g, qp, gp, qc, gc)


def test_one_infinite_feature_is_rejected_and_an_overflowing_sum_is_not():
    q, g, qp, gp, qc, gc = labelled_features(7, nq=4, ng=10)
    for bad in (np.inf, -np.inf, np.nan):
        g_bad = g.copy()
        g_bad[3, 1] = bad
        with pytest.raises(ValueError, match="g_feats: features contain NaN or infinite values"):
            evaluate_features(q, g_bad, qp, gp, qc, gc, normalize=True)
    # Finite features whose float32 sum overflows to inf are valid (the exact check decides).
    huge = as_feature_matrix(np.full((3, 4), 3e38, dtype=np.float32), "g_feats", torch.device("cpu"))
    assert bool(torch.isinf(huge.sum())) and huge.shape == (3, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_cpu():
    q, g, qp, gp, qc, gc = labelled_features(9)
    cpu = evaluate_features(q, g, qp, gp, qc, gc, normalize=True)
    gpu = evaluate_features(q, g, qp, gp, qc, gc, normalize=True, device="cuda")
    assert_same_metrics(gpu, cpu, tol=1e-5)
