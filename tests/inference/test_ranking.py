"""dcac.rank: top-k nearest gallery entries, checked against a brute-force full sort."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dcac.api as api
from dcac.inference.ranking import rank


def _feats(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_matches_brute_force_squared_euclidean():
    query, gallery = _feats(37, seed=1), _feats(101, seed=2)
    indices, distances = rank(query, gallery, topk=7, chunk_size=5)
    full = torch.cdist(query.double(), gallery.double()).pow(2)
    ref_dist, ref_idx = full.sort(dim=1)
    assert indices.shape == (37, 7) and indices.dtype == torch.long
    assert torch.equal(indices, ref_idx[:, :7])
    torch.testing.assert_close(distances.double(), ref_dist[:, :7], atol=1e-5, rtol=0)
    # On unit vectors the squared distance is 2 - 2 cos.
    cos = (query @ gallery.T).gather(1, indices)
    torch.testing.assert_close(distances, 2 - 2 * cos, atol=1e-5, rtol=0)


def test_chunking_does_not_change_the_result():
    query, gallery = _feats(50, seed=3), _feats(80, seed=4)
    a = rank(query, gallery, topk=10, chunk_size=1)
    b = rank(query, gallery, topk=10, chunk_size=1000)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_identical_vectors_rank_first_at_distance_zero_and_topk_is_capped():
    gallery = _feats(6, seed=5)
    indices, distances = rank(gallery[[4, 1]].half(), gallery, topk=50)
    assert indices.shape == (2, 6)
    assert indices[:, 0].tolist() == [4, 1]
    assert (distances >= 0).all() and distances[:, 0].max() < 1e-3
    assert (distances[:, 1:] >= distances[:, :-1]).all()


def test_api_exports_the_same_function_and_empty_queries_work():
    assert api.rank is rank
    indices, distances = rank(torch.empty(0, 16), _feats(4), topk=3)
    assert indices.shape == (0, 3) and distances.shape == (0, 3)


@pytest.mark.parametrize(
    "query, gallery, topk, message",
    [
        (torch.zeros(2, 4), torch.zeros(3, 5), 1, "4-d"),
        (torch.zeros(4), torch.zeros(3, 4), 1, "2-D"),
        (torch.zeros(2, 4), torch.zeros(0, 4), 1, "empty"),
        (torch.zeros(2, 4), torch.zeros(3, 4), 0, "topk"),
        (torch.zeros(2, 4, dtype=torch.long), torch.zeros(3, 4), 1, "floating"),
    ],
)
def test_bad_input_is_a_clear_error(query, gallery, topk, message):
    with pytest.raises(ValueError, match=message):
        rank(query, gallery, topk=topk)


def _clustered(n: int, centres: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, centres.shape[0], (n,), generator=g)
    return F.normalize(centres[picks] + 0.3 * torch.randn(n, centres.shape[1], generator=g), dim=1)


def test_rerank_ranks_by_the_evaluations_reranked_distance():
    from dcac.evaluation import rerank_dense

    centres = torch.randn(6, 16, generator=torch.Generator().manual_seed(7))
    query, gallery = _clustered(12, centres, 8), _clustered(60, centres, 9)
    reference = rerank_dense(query.double(), gallery.double(), (20, 6, 0.3), metric="euclidean")
    ref_dist, ref_idx = reference.sort(dim=1, stable=True)
    indices, distances = rank(query, gallery, topk=8, rerank="default")
    assert torch.equal(indices, ref_idx[:, :8])
    torch.testing.assert_close(distances.double(), ref_dist[:, :8], atol=1e-5, rtol=0)
    plain, _ = rank(query, gallery, topk=8)
    assert not torch.equal(plain, indices)  # re-ranking really changed the order
    assert torch.equal(rank(query, gallery, topk=8, rerank=True)[0], indices)
    assert torch.equal(rank(query, gallery, topk=8, rerank=(20, 6, 0.3))[0], indices)
    assert torch.equal(rank(query, gallery, topk=8, rerank=False)[0], plain)


def test_rerank_rejects_bad_parameters():
    with pytest.raises(ValueError, match="unknown preset"):
        rank(_feats(3), _feats(5), rerank="nope")
