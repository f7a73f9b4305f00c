"""PrototypeMemory: rebuild, cosine logits, the loss ``memory(v, y)`` and the hard and mean momentum updates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dcac.losses import PrototypeMemory


def _random_memory(num_ids: int = 6, dim: int = 8, seed: int = 0, **settings) -> PrototypeMemory:
    memory = PrototypeMemory(num_ids, dim, **settings)
    generator = torch.Generator().manual_seed(seed)
    memory.features.copy_(F.normalize(torch.randn(num_ids, dim, generator=generator), dim=1))
    return memory


def _batch(labels: list[int], dim: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(len(labels), dim, generator=generator), torch.tensor(labels)


def _loop_update(memory: torch.Tensor, v: torch.Tensor, labels: torch.Tensor, momentum: float, mode: str):
    """Cluster-contrast's ClusterMemory update, sample by sample in Python."""
    memory = memory.clone()
    v = F.normalize(v.float(), dim=1)
    if mode == "mean":
        for x, y in zip(v, labels.tolist()):
            memory[y] = momentum * memory[y] + (1 - momentum) * x
            memory[y] /= memory[y].norm()
        return memory
    for y in dict.fromkeys(labels.tolist()):
        samples = v[labels == y]
        hard = samples[int(torch.argmin(samples @ memory[y]))]
        memory[y] = momentum * memory[y] + (1 - momentum) * hard
        memory[y] /= memory[y].norm()
    return memory


def test_rebuild_equals_normalised_per_identity_means():
    features, labels = _batch([0, 2, 1, 0, 2, 2, 3, 1, 3, 3, 0], dim=8)
    memory = PrototypeMemory(4, 8)
    memory.rebuild(features.half(), labels)
    assert memory.features.dtype == torch.float32
    unit = F.normalize(features.half().float(), dim=1)
    for identity in range(4):
        mean = unit[labels == identity].mean(0)
        torch.testing.assert_close(memory.features[identity], mean / mean.norm())
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(4))


def test_rebuild_rejects_identities_without_features_and_bad_labels():
    features, labels = _batch([0, 0, 2])
    with pytest.raises(ValueError, match=r"1 of 3 identities have no feature.*\[1\]"):
        PrototypeMemory(3, 8).rebuild(features, labels)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        PrototypeMemory(3, 8).rebuild(features, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        PrototypeMemory(3, 8).rebuild(features[:, :4], labels)


def test_logits_and_loss_are_cosine_cross_entropy_with_temperature():
    v, labels = _batch([0, 3, 5, 3])
    unit = F.normalize(v, dim=1)
    warm = _random_memory(temperature=0.05)
    torch.testing.assert_close(warm.logits(unit), unit @ warm.features.T / 0.05)
    memory = _random_memory()  # the default T = 0.01
    expected = -torch.log_softmax(unit @ memory.features.T / 0.01, dim=1)[torch.arange(4), labels].mean()
    torch.testing.assert_close(memory(v, labels), expected)
    torch.testing.assert_close(memory(5 * v, labels), expected)  # v is normalised inside


def test_float16_logits_reproduce_autocast_rounding():
    """logits_dtype=float16 rounds like the official code's autocast matmul; the loss stays float32."""
    memory = _random_memory(logits_dtype=torch.float16)
    v, labels = _batch([0, 3, 5, 3])
    unit = F.normalize(v, dim=1)
    expected = (unit.half() @ memory.features.half().T) / 0.01
    logits = memory.logits(unit)
    assert logits.dtype == torch.float16
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    reference = F.cross_entropy(expected.float(), labels)
    loss = memory(v, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=0, atol=0)
    assert not torch.equal(loss, _random_memory()(v, labels))  # float16 rounding does change the loss


def test_gradient_flows_into_v_only_and_the_loss_leaves_the_memory_alone():
    memory = _random_memory()
    before = memory.features.clone()
    v, labels = _batch([1, 1, 4, 0])
    v.requires_grad_()
    memory(v, labels).backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert list(memory.parameters()) == [] and not memory.features.requires_grad
    assert torch.equal(memory.features, before)
    assert "features" in memory.state_dict()


def test_one_hard_update_by_hand():
    memory = PrototypeMemory(2, 2, momentum=0.2, update_mode="hard")
    memory.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    a = math.radians(10)
    v = torch.tensor([[math.cos(a), math.sin(a)], [0.0, 2.0], [3.0, 0.0]])  # all three are ID 0
    memory.update(v, torch.tensor([0, 0, 0]))
    # The hardest sample is (0, 1): similarity 0 against (1, 0).
    expected = torch.tensor([0.2, 0.8]) / math.sqrt(0.2**2 + 0.8**2)
    torch.testing.assert_close(memory.features[0], expected)
    torch.testing.assert_close(memory.features[1], torch.tensor([0.0, 1.0]))  # absent ID untouched


@pytest.mark.parametrize("mode", ["hard", "mean"])
def test_update_matches_the_sample_by_sample_reference(mode):
    memory = _random_memory(num_ids=7, dim=8, momentum=0.3, update_mode=mode)
    labels = [3, 0, 3, 5, 0, 3, 6, 5, 0, 3, 5, 6]  # interleaved, uneven counts; IDs 1, 2, 4 absent
    v, labels = _batch(labels, dim=8, seed=4)
    expected = _loop_update(memory.features, v, labels, 0.3, mode)
    memory.update(v, labels)
    torch.testing.assert_close(memory.features, expected)


def test_hard_update_ties_pick_the_first_sample_and_mean_moves_each_sample():
    memory = PrototypeMemory(1, 2, momentum=0.5)
    memory.features.copy_(torch.tensor([[1.0, 0.0]]))
    tie = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # both orthogonal to the prototype
    memory.update(tie, torch.tensor([0, 0]))
    torch.testing.assert_close(memory.features[0], F.normalize(torch.tensor([0.5, 0.5]), dim=0))

    hard, mean = _random_memory(3, 8, update_mode="hard"), _random_memory(3, 8, update_mode="mean")
    v, labels = _batch([1, 1, 1, 1], seed=9)
    hard.update(v, labels)
    mean.update(v, labels)
    assert not torch.allclose(hard.features[1], mean.features[1])


def test_half_precision_features_under_autocast_keep_a_float32_memory():
    memory = _random_memory()
    v, labels = _batch([2, 2, 4, 1])
    v = v.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = memory.logits(F.normalize(v, dim=1))
        loss = memory(v, labels)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    loss.backward()
    assert v.grad.dtype == torch.bfloat16 and v.grad.abs().sum() > 0
    expected = _loop_update(memory.features, v.detach(), labels, 0.2, "hard")
    memory.update(v.detach().half(), labels)
    assert memory.features.dtype == torch.float32
    torch.testing.assert_close(memory.features, expected, atol=2e-3, rtol=0)


def test_memory_rejects_unknown_mode_momentum_and_temperature():
    with pytest.raises(ValueError, match="update mode.*'median'"):
        PrototypeMemory(3, 8, update_mode="median")
    with pytest.raises(ValueError, match="momentum"):
        PrototypeMemory(3, 8, momentum=1.2)
    with pytest.raises(ValueError, match="temperature"):
        PrototypeMemory(3, 8, temperature=0.0)


def test_defaults_are_the_papers_and_the_configs():
    from dcac.config import LossConfig

    memory, losses = PrototypeMemory(3, 8), LossConfig()
    assert (memory.temperature, memory.momentum, memory.update_mode) == (0.01, 0.2, "hard")
    assert (losses.pcl_temperature, losses.pcl_momentum, losses.pcl_update) == (0.01, 0.2, "hard")
