"""id_loss: label-smoothed cross-entropy, checked against the classic CrossEntropyLabelSmooth formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcac.losses import id_loss


def _cross_entropy_label_smooth(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The Re-ID literature's CrossEntropyLabelSmooth (Szegedy et al. 2016), written out."""
    num_classes = logits.shape[1]
    log_probs = torch.log_softmax(logits, dim=1)
    targets = torch.zeros_like(log_probs).scatter_(1, labels.unsqueeze(1), 1)
    targets = (1 - epsilon) * targets + epsilon / num_classes
    return (-targets * log_probs).mean(0).sum()


@pytest.mark.parametrize("epsilon", [0.1, 0.0, 0.5])
def test_id_loss_equals_the_classic_label_smoothing_formula(epsilon):
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(8, 13, generator=generator)
    labels = torch.randint(0, 13, (8,), generator=generator)
    expected = _cross_entropy_label_smooth(logits, labels, epsilon)
    torch.testing.assert_close(id_loss(logits, labels, epsilon=epsilon), expected)


def test_default_smoothing_is_point_one_and_differs_from_plain_cross_entropy():
    logits = torch.tensor([[4.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    labels = torch.tensor([0, 1])
    torch.testing.assert_close(id_loss(logits, labels), _cross_entropy_label_smooth(logits, labels, 0.1))
    assert id_loss(logits, labels) > F.cross_entropy(logits, labels)


def test_half_precision_logits_give_a_float32_loss_with_gradients():
    logits = torch.randn(4, 5).to(torch.bfloat16).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3])
    loss = id_loss(logits, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, _cross_entropy_label_smooth(logits.float(), labels, 0.1))


def test_invalid_epsilon_is_rejected():
    with pytest.raises(ValueError, match="epsilon"):
        id_loss(torch.zeros(1, 2), torch.tensor([0]), epsilon=1.5)
