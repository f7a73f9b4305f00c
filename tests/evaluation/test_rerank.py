"""k-reciprocal re-ranking: dense and sparse implementations against a numpy transcription of the
published algorithm (Zhong et al., CVPR 2017, as released in CLIP-ReID / torchreid)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from dcac.evaluation import (
    RERANK_PRESETS,
    RerankParams,
    compute_distance,
    evaluate_features,
    evaluate_rank,
    rerank_dense,
    rerank_sparse,
    resolve_rerank,
)
from dcac.evaluation.rerank_sparse import rerank_sparse_blocks


def published_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value):
    """The published loop algorithm, transcribed line by line (float32 V, stable argsort)."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    ).astype(np.float32)
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = original_dist.shape[0]
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward_k_neigh_index = initial_rank[candidate, : int(np.around(k1 / 2.0)) + 1]
            candidate_backward_k_neigh_index = initial_rank[
                candidate_forward_k_neigh_index, : int(np.around(k1 / 2.0)) + 1
            ]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2.0 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def clustered_features(seed, nq=25, ng=120, n_ids=15, dim=12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    q = centres[rng.integers(0, n_ids, nq)] + 0.6 * rng.normal(size=(nq, dim))
    g = centres[rng.integers(0, n_ids, ng)] + 0.6 * rng.normal(size=(ng, dim))
    return q.astype(np.float32), g.astype(np.float32)


def published_from_features(q, g, params, metric="euclidean"):
    everything = compute_distance(np.concatenate([q, g]), np.concatenate([q, g]), metric).numpy()
    nq = q.shape[0]
    return published_re_ranking(
        everything[:nq, nq:], everything[:nq, :nq], everything[nq:, nq:], params.k1, params.k2, params.lambda_value
    )


CASES = [
    (0, RerankParams(20, 6, 0.3), "euclidean"),
    (1, RerankParams(50, 15, 0.3), "euclidean"),
    (2, RerankParams(5, 1, 0.5), "euclidean"),
    (3, RerankParams(7, 3, 0.0), "cosine"),
    (4, RerankParams(25, 4, 1.0), "euclidean"),  # k1/2 = 12.5 rounds half to even
]


@pytest.mark.parametrize("seed, params, metric", CASES)
def test_dense_matches_published_algorithm(seed, params, metric):
    q, g = clustered_features(seed)
    expected = published_from_features(q, g, params, metric)
    got = rerank_dense(q, g, params, metric=metric).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed, params, metric", CASES)
@pytest.mark.parametrize("chunk_size", [16, None])
def test_sparse_matches_dense(seed, params, metric, chunk_size):
    q, g = clustered_features(seed)
    dense = rerank_dense(q, g, params, metric=metric)
    sparse = rerank_sparse(q, g, params, metric=metric, chunk_size=chunk_size)
    assert sparse.shape == (q.shape[0], g.shape[0])
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-6)


def test_sparse_matches_dense_with_duplicate_features():
    q, g = clustered_features(7, nq=10, ng=60)
    g = np.concatenate([g, g[:20]])  # exact duplicates tie in distance
    params = RerankParams(6, 3, 0.3)
    torch.testing.assert_close(rerank_sparse(q, g, params, chunk_size=9), rerank_dense(q, g, params), rtol=0, atol=1e-6)


def test_evaluate_features_with_rerank_uses_reranked_distances():
    rng = np.random.default_rng(8)
    q, g = clustered_features(8, nq=30, ng=150)
    qp, gp = rng.integers(0, 5, 30), rng.integers(0, 5, 150)
    qc, gc = rng.integers(0, 3, 30), rng.integers(0, 3, 150)
    params = RERANK_PRESETS["default"]
    expected = evaluate_rank(rerank_dense(q, g, params), qp, gp, qc, gc)
    for spec in ("default", (20, 6, 0.3), {"k1": 20, "k2": 6, "lambda_value": 0.3}, params):
        got = evaluate_features(q, g, qp, gp, qc, gc, rerank=spec)
        np.testing.assert_allclose(got["cmc"], expected["cmc"], atol=1e-6)
        assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)


def test_presets_and_bad_specs():
    assert RERANK_PRESETS["default"] == RerankParams(20, 6, 0.3)
    assert RERANK_PRESETS["dcac"] == RerankParams(50, 15, 0.3)
    assert resolve_rerank(None) is None and resolve_rerank("zhong") == RerankParams()
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_rerank("clip")
    with pytest.raises(ValueError, match="k1"):
        RerankParams(0, 6, 0.3)
    with pytest.raises(ValueError, match="lambda_value"):
        RerankParams(20, 6, 1.5)
    with pytest.raises(ValueError, match="unknown keys"):
        resolve_rerank({"k1": 20, "lam": 0.3})


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_blocks_are_the_rows_of_rerank_sparse(chunk_size, monkeypatch):
    q, g = clustered_features(3, nq=40, ng=120)
    params = RerankParams(6, 3, 0.3)
    whole = rerank_sparse(q, g, params, chunk_size=chunk_size)
    # Blocks of at most 8 query rows (the budget is in distances: 8 rows of 120 gallery entries).
    monkeypatch.setattr(sys.modules["dcac.evaluation.rerank_sparse"], "_BLOCK_ELEMENTS", 8 * 120)
    blocks = list(rerank_sparse_blocks(q, g, params, chunk_size=chunk_size))
    assert [start for start, _ in blocks] == list(range(0, 40, 8))
    assert torch.equal(torch.cat([block for _, block in blocks]), whole)  # bit for bit, in query order


def test_evaluate_features_ranks_the_reranked_blocks_exactly():
    rng = np.random.default_rng(9)
    q, g = clustered_features(9, nq=25, ng=90)
    qp, gp, qc, gc = rng.integers(0, 4, 25), rng.integers(0, 4, 90), rng.integers(0, 3, 25), rng.integers(0, 3, 90)
    params = RerankParams(6, 3, 0.3)
    expected = evaluate_rank(rerank_sparse(q, g, params), qp, gp, qc, gc)
    got = evaluate_features(q, g, qp, gp, qc, gc, rerank=params)
    assert np.array_equal(got["cmc"], expected["cmc"]) and got["mAP"] == expected["mAP"]
    assert got["mINP"] == expected["mINP"] and got["num_valid_queries"] == expected["num_valid_queries"]


def test_evaluate_features_with_rerank_rejects_non_finite_distances():
    g = np.ones((20, 8), dtype=np.float32)  # every distance 0: the column maxima are 0 and the division NaN
    labels = np.arange(20) % 4
    with pytest.raises(ValueError, match="NaN or infinite re-ranked"):
        evaluate_features(
            g[:5], g, labels[:5], labels, labels[:5] % 2, (labels + 1) % 2, rerank=RerankParams(4, 1, 0.3)
        )


@pytest.mark.parametrize("k", [1, 5, 21, 40, 999, 1000, 1300])
def test_nearest_neighbours_equal_a_stable_sort_of_the_divided_rows(k):
    from dcac.evaluation.rerank_sparse import _nearest_stable

    gen = torch.Generator().manual_seed(k)
    # Rows of exact ties (small integers), and rows one ulp apart that the division can merge into ties.
    ties = torch.randint(0, 12, (40, 1000), generator=gen).float()
    ulps = 1.75 + torch.randint(0, 30, (40, 1000), generator=gen).float() * 2.0**-23
    assert (ulps / 3.0).unique().numel() < ulps.unique().numel()  # dividing by 3 really merges neighbours
    raw = torch.cat([ties, ulps, torch.randn(40, 1000, generator=gen)])
    for scale in (torch.full((120,), 3.0), torch.rand(120, generator=gen) + 0.5, torch.linspace(-1.0, 2.0, 120)):
        expected = torch.argsort(raw / scale[:, None], dim=1, stable=True)[:, :k]
        assert torch.equal(_nearest_stable(raw, scale, k), expected)
