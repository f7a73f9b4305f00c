"""Who may write a run folder: ``dcac train`` takes the folder's lock, then resumes its own run or replaces it.

A folder that holds a run is either resumed (its checkpoint, same config), replaced whole (``--no-resume``),
or refused: a model without a training checkpoint (``dcac import``'s, or one copied in) would otherwise be
overwritten file by file, leaving another run's metrics, report and calibration beside the new model.
"""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from dcac.config import DCACConfig
from dcac.engine.resume import check_resumable
from dcac.storage.checkpoint import find_training_checkpoint
from dcac.storage.errors import CheckpointError
from dcac.storage.run_folder import REID_WEIGHTS, RUN_LOCK
from dcac.storage.run_lock import RunFolderTakenError, RunLock, clear_run_folder, holds_run, lock_run_folder


def claim_training_folder(config: DCACConfig, accelerator: Accelerator, *, resume: bool) -> RunLock:
    """The main process locks ``train.output_dir`` and makes it this run's; every rank raises if that fails."""
    lock, error = RunLock(Path(config.train.output_dir) / RUN_LOCK, None), None  # other ranks hold nothing
    if accelerator.is_main_process:
        try:
            lock = _claim(Path(config.train.output_dir), config, resume=resume)
        except (CheckpointError, ValueError, OSError) as err:
            error = err
    if accelerator.num_processes > 1:
        # The other ranks must stop too, not wait for the main process at the first collective.
        message = broadcast_object_list([None if error is None else str(error)])[0]
        if message is not None and error is None:
            raise CheckpointError(message)
    if error is not None:
        raise error
    return lock


def _claim(run_dir: Path, config: DCACConfig, *, resume: bool) -> RunLock:
    lock = lock_run_folder(run_dir, "dcac train")
    try:
        if holds_run(run_dir):
            if not resume:
                clear_run_folder(run_dir)
            elif find_training_checkpoint(run_dir) is not None:
                check_resumable(run_dir, config)
            elif (run_dir / REID_WEIGHTS).exists():
                raise RunFolderTakenError(
                    f"{run_dir} holds a model without a training checkpoint (an imported or copied run): training "
                    "would replace it; pass --no-resume to replace the run whole, or choose another train.output_dir"
                )
    except BaseException:
        lock.release()
        raise
    return lock
