"""The DCAC training module: the Re-ID model, its ID memory, and the diffusion teacher bridged by the conditioner.

One forward pass computes the paper's whole objective,
``L = w_id * L_id + w_pcl * L_pcl + w_diff * L_diff``, where ``L_diff`` is the teacher's noise-prediction loss
conditioned on ``c = softmax(z / tau) P``.  Because ``c`` is a function of the classifier logits, the diffusion
loss back-propagates into the classifier, the BNNeck and the encoder: that gradient path is the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dcac.losses import PrototypeMemory, id_loss
from dcac.models.conditioning import IDConditioner
from dcac.models.diffusion_teacher import DiffusionTeacher
from dcac.models.identity_information import identity_information
from dcac.models.reid_model import ReIDModel


@dataclass
class LossWeights:
    """The weights of the objective's terms and the ID loss's label smoothing: what DCAC needs of a run's
    ``loss`` section (``dcac.models.build.build_dcac`` translates it; the paper's values are its defaults)."""

    id_weight: float
    pcl_weight: float
    diffusion_weight: float
    label_smoothing: float


@dataclass
class DCACOutput:
    loss: torch.Tensor
    parts: dict[str, torch.Tensor]  # detached loss terms and accuracy, for logging
    embeddings: torch.Tensor  # L2-normalised f_bn (float32, detached): the memory update's input


class DCAC(nn.Module):
    """``bnneck_twice`` reproduces the official code, which applies the BNNeck a second time in training
    (once in the encoder, once in its diffusion wrapper), so the running statistics move twice per step
    (effective momentum 1 - 0.9^2 = 0.19); the batch-normalised output is the same both times."""

    def __init__(
        self,
        reid: ReIDModel,
        memory: PrototypeMemory,
        losses: LossWeights,
        teacher: DiffusionTeacher | None = None,
        conditioner: IDConditioner | None = None,
        *,
        bnneck_twice: bool = False,
    ) -> None:
        super().__init__()
        if (teacher is None) != (conditioner is None):
            raise ValueError("the diffusion teacher and the conditioner come together (or neither, for the baseline)")
        self.reid = reid
        self.memory = memory
        self.teacher = teacher
        self.conditioner = conditioner
        self.losses = losses
        self.bnneck_twice = bnneck_twice

    def parameter_groups(self, lr: float, diffusion_lr_mult: float = 1.0) -> list[dict]:
        """Optimiser groups of the trainable parameters: the Re-ID model at ``lr``, and the diffusion side
        (teacher and conditioner: UNet or LoRA, prompts, projection) at ``lr * diffusion_lr_mult``.

        Each group carries its ``base_lr`` so the LR schedule scales it without knowing the groups."""
        reid = [p for p in self.reid.parameters() if p.requires_grad]
        groups = [{"params": reid, "lr": lr, "base_lr": lr, "name": "reid"}]
        diffusion = [p for part in (self.teacher, self.conditioner) if part is not None for p in part.parameters()]
        diffusion = [p for p in diffusion if p.requires_grad]
        if diffusion:
            diffusion_lr = lr * diffusion_lr_mult
            groups.append({"params": diffusion, "lr": diffusion_lr, "base_lr": diffusion_lr, "name": "diffusion"})
        return groups

    def forward(self, images: torch.Tensor, labels: torch.Tensor, latents: torch.Tensor | None = None) -> DCACOutput:
        out = self.reid(images)
        feat_bn = self.reid.bottleneck(out.feat) if self.bnneck_twice and self.training else out.feat_bn
        loss_id = id_loss(out.logits, labels, epsilon=self.losses.label_smoothing)
        # One float32 copy for both memory paths, so their gradients add up before the cast back to autocast's dtype.
        feat_bn_f32 = feat_bn.float()
        loss_pcl = self.memory(feat_bn_f32, labels)
        loss = self.losses.id_weight * loss_id + self.losses.pcl_weight * loss_pcl
        parts = {"loss_id": loss_id.detach(), "loss_pcl": loss_pcl.detach()}
        embeddings = F.normalize(feat_bn.detach().float(), dim=1)
        memory_logits = None
        if self.teacher is not None:
            if latents is None:
                raise ValueError("DCAC with a diffusion teacher needs the batch's latents")
            if self.conditioner.needs_memory_logits:
                memory_logits = self.memory.logits(F.normalize(feat_bn_f32, dim=1))
            context = self.conditioner(logits=out.logits, labels=labels, feat_bn=feat_bn, memory_logits=memory_logits)
            loss_diff = self.teacher.loss(latents, context)
            loss = loss + self.losses.diffusion_weight * loss_diff
            parts["loss_diff"] = loss_diff.detach()
        parts["acc"] = (out.logits.detach().argmax(dim=1) == labels).float().mean()
        parts.update(identity_information(self._condition_probabilities(out.logits, memory_logits), labels))
        return DCACOutput(loss=loss, parts=parts, embeddings=embeddings)

    def _condition_probabilities(self, logits: torch.Tensor, memory_logits: torch.Tensor | None) -> torch.Tensor:
        """The condition's p for the correlation variant; the classifier's softmax(z / tau) for any other arm."""
        with torch.no_grad():
            if self.conditioner is not None and self.conditioner.variant == "correlation":
                memory = None if memory_logits is None else memory_logits.detach()
                return self.conditioner.probabilities(logits=logits.detach(), memory_logits=memory)
            temperature = self.conditioner.temperature if self.conditioner is not None else 1.0
            return torch.softmax(logits.detach().float() / temperature, dim=1)
