"""ReIDModel: BNNeck, classifier initialisation, train/eval outputs and retrieval features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcac.models.reid_encoder import ReIDEncoderConfig
from dcac.models.reid_model import ReIDModel, ReIDOutput


def _model(num_ids: int = 5) -> ReIDModel:
    torch.manual_seed(0)
    return ReIDModel(ReIDEncoderConfig.tiny(), num_ids)


def test_bnneck_and_classifier_initialisation():
    model = ReIDModel(ReIDEncoderConfig.tiny(), num_ids=751)
    bn = model.bottleneck
    assert bn.num_features == 32
    assert torch.equal(bn.weight, torch.ones(32)) and torch.equal(bn.bias, torch.zeros(32))
    assert bn.weight.requires_grad and not bn.bias.requires_grad
    weight = model.classifier.weight
    assert weight.shape == (751, 32) and model.classifier.bias is None
    assert abs(weight.mean().item()) < 1e-4
    assert weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert model.config == ReIDEncoderConfig.tiny() and model.num_ids == 751


def test_train_forward_uses_batch_statistics_and_classifies_feat_bn():
    model = _model().train()
    out = model(torch.randn(4, 3, 64, 32))
    assert isinstance(out, ReIDOutput)
    assert out.feat.shape == (4, 32) and out.feat_bn.shape == (4, 32) and out.logits.shape == (4, 5)
    mean, var = out.feat.mean(0), out.feat.var(0, unbiased=False)
    expected_bn = (out.feat - mean) / torch.sqrt(var + model.bottleneck.eps)
    torch.testing.assert_close(out.feat_bn, expected_bn, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.logits, out.feat_bn @ model.classifier.weight.T)


def test_eval_forward_uses_running_statistics():
    model = _model()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 64, 32))
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 32))  # batch of one works in eval mode
    bn = model.bottleneck
    expected = (out.feat - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight
    torch.testing.assert_close(out.feat_bn, expected)
    assert out.logits.shape == (1, 5)


def test_inference_only_model_has_no_classifier_and_no_logits():
    model = _model(num_ids=0).eval()
    assert model.classifier is None
    out = model(torch.randn(2, 3, 64, 32))
    assert out.logits is None and out.feat_bn.shape == (2, 32)
    with pytest.raises(ValueError, match="num_ids"):
        ReIDModel(ReIDEncoderConfig.tiny(), -1)


def test_extract_returns_unit_features_before_or_after_bn():
    model = _model().eval()
    # Non-trivial running statistics, so "after BN" differs from "before BN".
    model.bottleneck.running_mean.uniform_(-1, 1)
    model.bottleneck.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        out = model(x)
        after = model.extract(x)
        before = model.extract(x, after_bn=False)
    torch.testing.assert_close(after.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(after, F.normalize(out.feat_bn, dim=1))
    torch.testing.assert_close(before, F.normalize(out.feat, dim=1))
    assert not torch.allclose(after, before)


@pytest.mark.parametrize("after_bn", [True, False])
def test_flip_test_feature_is_the_normalised_mean_of_the_image_and_its_mirror(after_bn):
    model = _model().eval()
    model.bottleneck.running_mean.uniform_(-1, 1)
    model.bottleneck.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(-1))  # two separate passes: the brute-force reference
        key = "feat_bn" if after_bn else "feat"
        expected = F.normalize((getattr(plain, key) + getattr(mirrored, key)) / 2, dim=1)
        flipped = model.extract(x, after_bn=after_bn, flip=True)
        of_mirror = model.extract(x.flip(-1), after_bn=after_bn, flip=True)
    torch.testing.assert_close(flipped, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(of_mirror, flipped, rtol=1e-5, atol=1e-6)  # a mirror has the same flip-test feature
    assert not torch.allclose(flipped, model.extract(x, after_bn=after_bn), atol=1e-3)


def test_gradients_reach_encoder_bn_weight_and_classifier():
    model = _model().train()
    out = model(torch.randn(4, 3, 64, 32))
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])).backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.bottleneck.weight.grad.abs().sum() > 0
    assert model.bottleneck.bias.grad is None
    assert model.encoder.visual_projection.weight.grad.abs().sum() > 0
