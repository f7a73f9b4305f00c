"""What the teacher does to the Re-ID model, measured on one batch: DCAC's mechanism rather than its end metric.

DCAC's premise is that the diffusion loss, through ``c = softmax(z / tau) P``, pushes the classifier's logits
``z`` somewhere useful. On a batch this measures:

* ``cond_gain``: how much lower the teacher's loss is with the batch's condition than with the null one (zeros,
  the pre-trained teacher's dropped caption), at the same latents, noise and timesteps: 0 = the teacher
  ignores what the condition says;
* ``grad_ratio``: ``|w_diff dL_diff/dz| / |w_id dL_id/dz|`` over the batch: how hard the teacher pushes the
  logits next to the ID loss (0 when the condition does not depend on ``z``, as for ``hard`` and ``instance``);
* ``grad_cosine``: the mean over images of the cosine between the diffusion loss's descent direction
  ``-dL_diff/dz`` and ``onehot(y) - p`` (with ``p`` the condition's probabilities), the direction that raises
  the true identity's probability: > 0 = the teacher pushes p towards the right person;
* ``loss_diff``, ``p_entropy``, ``p_true``: the batch's diffusion loss and identity information.

Nothing here changes the model: it runs in eval mode (running BatchNorm statistics, no update), draws its
noise from its own generator and takes gradients with respect to ``z`` only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcac.losses import id_loss
from dcac.models.dcac import DCAC
from dcac.models.identity_information import identity_information


def mechanism_measurements(
    model: DCAC, images: torch.Tensor, labels: torch.Tensor, latents: torch.Tensor, *, seed: int, draws: int = 4
) -> dict[str, float]:
    """The measurements above on one batch (``latents``: the batch's scaled VAE latents; unused without a teacher)."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return _measure(model, images, labels, latents, seed, draws)
    finally:
        model.train(was_training)


def _measure(model: DCAC, images, labels, latents, seed: int, draws: int) -> dict[str, float]:
    out = model.reid(images)
    z = out.logits.detach().float().requires_grad_(True)
    feat_bn = out.feat_bn.detach()
    memory_logits = None
    if model.conditioner is not None and model.conditioner.needs_memory_logits:
        memory_logits = model.memory.logits(F.normalize(feat_bn.float(), dim=1)).detach()
    p = model._condition_probabilities(z, memory_logits)
    values = {k: float(v) for k, v in identity_information(p, labels).items()}
    if model.teacher is None:
        return values
    (grad_id,) = torch.autograd.grad(
        model.losses.id_weight * id_loss(z, labels, epsilon=model.losses.label_smoothing), z
    )
    context = model.conditioner(logits=z, labels=labels, feat_bn=feat_bn, memory_logits=memory_logits)
    generator = torch.Generator().manual_seed(seed)
    loss_diff, loss_null = torch.zeros(()), 0.0
    for _ in range(draws):
        timesteps = torch.randint(model.teacher.config.num_train_timesteps, (len(z),), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        loss_diff = loss_diff + model.teacher.loss(latents, context, timesteps=timesteps, noise=noise) / draws
        with torch.no_grad():
            null = torch.zeros_like(context)
            loss_null += float(model.teacher.loss(latents, null, timesteps=timesteps, noise=noise)) / draws
    grad_diff = torch.zeros_like(z)
    if context.requires_grad:
        (grad_diff,) = torch.autograd.grad(model.losses.diffusion_weight * loss_diff, z, allow_unused=True)
        grad_diff = torch.zeros_like(z) if grad_diff is None else grad_diff
    towards_true = F.one_hot(labels, z.shape[1]).float() - p
    cosine = F.cosine_similarity(-grad_diff, towards_true, dim=1) if grad_diff.any() else None
    values.update(
        loss_diff=float(loss_diff.detach()),
        loss_null=loss_null,
        cond_gain=1.0 - float(loss_diff.detach()) / loss_null,
        grad_ratio=float(grad_diff.norm() / grad_id.norm()),
    )
    if cosine is not None:
        values["grad_cosine"] = float(cosine.mean())
    return values
