"""What multi-process (multi-GPU, multi-node) training and evaluation need beyond DDP itself.

DDP keeps the parameters identical on every rank; three things it does not do are done here:

- **Sharded feature extraction.** The per-epoch memory rebuild and the evaluation extract features of
  every image. Each rank extracts one contiguous shard of the records and the shards are all-gathered in
  rank order, so every rank ends with the features of all records in record order, ``world_size`` times
  faster than every rank extracting everything.
- **Identical buffers before extraction.** In training mode each rank's BatchNorm updates its running
  statistics from its own batch; DDP only re-broadcasts rank 0's buffers at the start of the next forward.
  Extraction (eval mode) uses the running statistics, so without a broadcast the shards of different ranks
  would be computed by different models. Rank 0's buffers are the ones its checkpoint stores.
- **Results computed once.** Metrics are computed on rank 0 and broadcast, so every rank returns the same
  value and every rank takes part in the same collectives (a rank that skips a collective that another
  enters deadlocks both: fast-reid #306/#420).

DDP itself must be told that some trainable parameters take no part in a step
(``dcac.engine.training_setup.DDP_KWARGS``).

Every function is a no-op pass-through in a single process (``torch.distributed`` not initialised), so the
same code serves ``dcac train`` on one device, ``torchrun`` and ``accelerate launch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from dcac.data.records import ImageRecord
from dcac.evaluation.features import extract_features, image_loader
from dcac.models.reid_model import ReIDModel

T = TypeVar("T")


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(num_items: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous shard; the first ``num_items % world_size`` shards get one more."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    if num_items < 0:
        raise ValueError(f"num_items must be >= 0, got {num_items}")
    base, extra = divmod(num_items, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def gather_shards(local: torch.Tensor, num_items: int) -> torch.Tensor:
    """All ranks' shards of a ``num_items``-row tensor, concatenated in rank order, on every rank.

    ``local`` is this rank's shard (rows ``shard_bounds(num_items, rank, world_size)``). Shards differ in
    length by at most one row; they are zero-padded to the longest for the all-gather and cut back after.
    """
    rank, world_size = rank_and_world_size()
    start, stop = shard_bounds(num_items, rank, world_size)
    if local.shape[0] != stop - start:
        raise ValueError(f"rank {rank} holds {local.shape[0]} rows but its shard of {num_items} is {stop - start}")
    if world_size == 1:
        return local
    longest = -(-num_items // world_size)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(pieces, padded.contiguous())
    lengths = [b - a for a, b in (shard_bounds(num_items, r, world_size) for r in range(world_size))]
    return torch.cat([piece[:length] for piece, length in zip(pieces, lengths)])


def broadcast_buffers_from_main(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics, the ID memory) into every rank's ``module``."""
    if rank_and_world_size()[1] == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank; other ranks' ``value`` is ignored."""
    if rank_and_world_size()[1] == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def extract_features_sharded(
    model: ReIDModel,
    records: Sequence[ImageRecord],
    *,
    height: int,
    width: int,
    batch_size: int,
    num_workers: int,
    after_bn: bool = True,
    flip: bool = False,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: str | None = None,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """L2-normalised features of every record, in record order, on every rank (see :func:`extract_features`).

    Each rank extracts its contiguous shard with rank 0's buffers, then the shards are all-gathered.
    Every rank must call this with the same records (it is a collective).
    """
    rank, world_size = rank_and_world_size()
    broadcast_buffers_from_main(model)
    start, stop = shard_bounds(len(records), rank, world_size)
    loader = image_loader(records[start:stop], height, width, batch_size, num_workers, interpolation)
    local = extract_features(
        model,
        loader,
        after_bn=after_bn,
        flip=flip,
        device=device,
        autocast_dtype=autocast_dtype,
        progress=progress if rank == 0 else None,
    )
    return gather_shards(local, len(records))
