"""dcac.losses: the Re-ID losses (label-smoothed ID loss, prototypical contrastive loss)."""

from dcac.losses.id_loss import id_loss
from dcac.losses.pcl import PrototypeMemory

__all__ = ["PrototypeMemory", "id_loss"]
