"""IDConditioner: shapes, values against hand computation, and where gradients flow."""

from __future__ import annotations

import pytest
import torch

from dcac.models.conditioning import IDConditioner

N, D, F, B = 7, 16, 12, 5


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, N, generator=g, requires_grad=True)
    memory_logits = torch.randn(B, N, generator=g, requires_grad=True)
    feat_bn = torch.randn(B, F, generator=g, requires_grad=True)
    labels = torch.randint(0, N, (B,), generator=g)
    return dict(logits=logits, labels=labels, feat_bn=feat_bn, memory_logits=memory_logits)


def _softmax_by_hand(x, tau):
    e = torch.exp(x / tau - (x / tau).max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("source", ["fc", "memory", "both"])
def test_correlation_values(source):
    torch.manual_seed(0)
    tau = 0.6
    cond = IDConditioner(N, context_dim=D, feat_dim=F, prob_source=source, temperature=tau)
    x = _inputs()
    p_fc = _softmax_by_hand(x["logits"].detach(), tau)
    p_mem = _softmax_by_hand(x["memory_logits"].detach(), 1.0)  # already M v / T: tau acts on the classifier only
    p = {"fc": p_fc, "memory": p_mem, "both": (p_fc + p_mem) / 2}[source]
    expected = torch.stack([sum(p[b, i] * cond.prompts[i] for i in range(N)) for b in range(B)])
    context = cond(**x)
    assert context.shape == (B, D)
    torch.testing.assert_close(context, expected, rtol=1e-5, atol=1e-6)


def test_prompts_initialised_standard_normal():
    torch.manual_seed(0)
    prompts = IDConditioner(500, context_dim=768).prompts
    assert prompts.shape == (500, 768)
    assert abs(prompts.mean().item()) < 0.01 and abs(prompts.std().item() - 1) < 0.01


@pytest.mark.parametrize(
    "variant,source,reaches,not_reaches",
    [
        ("correlation", "fc", ["logits"], ["memory_logits", "feat_bn"]),
        ("correlation", "memory", ["memory_logits"], ["logits", "feat_bn"]),
        ("correlation", "both", ["logits", "memory_logits"], ["feat_bn"]),
        ("hard", "fc", [], ["logits", "memory_logits", "feat_bn"]),
        ("instance", "fc", ["feat_bn"], ["logits", "memory_logits"]),
    ],
)
def test_gradient_paths(variant, source, reaches, not_reaches):
    cond = IDConditioner(N, context_dim=D, feat_dim=F, variant=variant, prob_source=source)
    x = _inputs()
    cond(**x).square().sum().backward()
    for name in reaches:
        assert x[name].grad is not None and x[name].grad.abs().sum() > 0, name
    for name in not_reaches:
        assert x[name].grad is None, name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cond.parameters())


def test_hard_and_instance_values():
    x = _inputs()
    hard = IDConditioner(N, context_dim=D, variant="hard")
    torch.testing.assert_close(hard(**x), hard.prompts[x["labels"]])
    instance = IDConditioner(N, context_dim=D, feat_dim=F, variant="instance")
    assert not hasattr(instance, "prompts")
    assert instance.projection.shape == (F, D)  # Q: no bias
    unit = x["feat_bn"] / x["feat_bn"].norm(dim=1, keepdim=True)
    torch.testing.assert_close(instance(**x), unit @ instance.projection)
    torch.testing.assert_close(instance(feat_bn=3 * x["feat_bn"]), unit @ instance.projection)  # scale-free


def test_instance_projection_initialised_standard_normal():
    torch.manual_seed(0)
    projection = IDConditioner(3, context_dim=768, feat_dim=512, variant="instance").projection
    assert projection.shape == (512, 768) and [
        name for name, _ in IDConditioner(3, variant="instance").named_parameters()
    ] == ["projection"]
    assert abs(projection.mean().item()) < 0.01 and abs(projection.std().item() - 1) < 0.01


def test_needs_memory_logits_only_for_the_memory_sources():
    assert not IDConditioner(N).needs_memory_logits
    assert IDConditioner(N, prob_source="memory").needs_memory_logits
    assert IDConditioner(N, prob_source="both").needs_memory_logits
    assert not IDConditioner(N, variant="hard", prob_source="both").needs_memory_logits


def test_bad_input_errors():
    with pytest.raises(ValueError, match="variant"):
        IDConditioner(N, variant="soft")
    with pytest.raises(ValueError, match="probability source"):
        IDConditioner(N, prob_source="bank")
    with pytest.raises(ValueError, match="temperature"):
        IDConditioner(N, temperature=0.0)
    with pytest.raises(ValueError, match="variant 'none'"):
        IDConditioner(N, variant="none")  # the baseline has no conditioner
    with pytest.raises(ValueError, match="memory_logits"):
        IDConditioner(N, prob_source="memory")(logits=torch.zeros(B, N))
    with pytest.raises(ValueError, match="B x 7"):
        IDConditioner(N)(logits=torch.zeros(B, N + 1))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        IDConditioner(N, variant="hard")(labels=torch.tensor([0, 7]))
