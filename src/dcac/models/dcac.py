"""The DCAC training module: the Re-ID model, its ID memory, and the diffusion teacher bridged by the conditioner.

One forward pass computes the whole objective of DESIGN §1.5,
``L = w_id * L_id + w_pcl * L_pcl + w_diff * L_diff``, where ``L_diff`` is the teacher's noise-prediction loss
conditioned on ``c = softmax(z / tau) P``.  Because ``c`` is a function of the classifier logits, the diffusion
loss back-propagates into the classifier, the BNNeck and the encoder: that gradient path is the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dcac.config import LossConfig
from dcac.losses import PrototypeMemory, id_loss
from dcac.models.conditioning import IDConditioner
from dcac.models.diffusion_teacher import DiffusionTeacher
from dcac.models.identity_information import identity_information
from dcac.models.reid_model import ReIDModel


@dataclass
class DCACOutput:
    loss: torch.Tensor
    parts: dict[str, torch.Tensor]  # detached loss terms and accuracy, for logging
    embeddings: torch.Tensor  # L2-normalised f_bn (float32, detached): the memory update's input


class DCAC(nn.Module):
    def __init__(
        self,
        reid: ReIDModel,
        memory: PrototypeMemory,
        losses: LossConfig,
        teacher: DiffusionTeacher | None = None,
        conditioner: IDConditioner | None = None,
    ) -> None:
        super().__init__()
        if (teacher is None) != (conditioner is None):
            raise ValueError("the diffusion teacher and the conditioner come together (or neither, for the baseline)")
        self.reid = reid
        self.memory = memory
        self.teacher = teacher
        self.conditioner = conditioner
        self.losses = losses

    @property
    def uses_diffusion(self) -> bool:
        return self.teacher is not None

    def forward(self, images: torch.Tensor, labels: torch.Tensor, latents: torch.Tensor | None = None) -> DCACOutput:
        out = self.reid(images)
        embeddings = F.normalize(out.feat_bn.float(), dim=1)
        loss_id = id_loss(out.logits, labels, epsilon=self.losses.label_smoothing)
        memory_logits = self.memory.logits(embeddings, temperature=self.losses.pcl_temperature)
        loss_pcl = F.cross_entropy(memory_logits, labels)
        loss = self.losses.id_weight * loss_id + self.losses.pcl_weight * loss_pcl
        parts = {"loss_id": loss_id.detach(), "loss_pcl": loss_pcl.detach()}
        if self.teacher is not None:
            if latents is None:
                raise ValueError("DCAC with a diffusion teacher needs the batch's latents")
            context = self.conditioner(
                logits=out.logits, labels=labels, feat_bn=out.feat_bn, memory_logits=memory_logits
            )
            loss_diff = self.teacher.loss(latents, context)
            loss = loss + self.losses.diffusion_weight * loss_diff
            parts["loss_diff"] = loss_diff.detach()
        parts["acc"] = (out.logits.detach().argmax(dim=1) == labels).float().mean()
        parts.update(identity_information(self._condition_probabilities(out.logits, memory_logits), labels))
        return DCACOutput(loss=loss, parts=parts, embeddings=embeddings.detach())

    def _condition_probabilities(self, logits: torch.Tensor, memory_logits: torch.Tensor) -> torch.Tensor:
        """The condition's p for the correlation variant; the classifier's softmax(z / tau) for any other arm."""
        with torch.no_grad():
            if self.conditioner is not None and self.conditioner.variant == "correlation":
                return self.conditioner.probabilities(logits=logits.detach(), memory_logits=memory_logits.detach())
            temperature = self.conditioner.temperature if self.conditioner is not None else 1.0
            return torch.softmax(logits.detach().float() / temperature, dim=1)
