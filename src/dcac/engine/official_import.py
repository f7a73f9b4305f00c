"""Importing a released official DCAC checkpoint → a dcac run folder (the command: ``dcac.cli.official``).

The run folder holds ``config.yaml`` (the preset of the checkpoint's setting, or the one given),
``run_info.json`` and ``reid_model.safetensors``, so ``dcac eval / extract / search / export`` read it like a
trained run.  When the checkpoint carries the teacher, its LoRA, ID prompts and the official code's frozen
q/k/v biases are written under dcac's names to ``teacher_init.safetensors`` (see
:mod:`dcac.models.official_teacher`).
"""

from __future__ import annotations

import re
from pathlib import Path

from dcac.config import DCACConfig, preset_names
from dcac.storage.errors import CheckpointError
from dcac.storage.run_folder import TEACHER_INIT

# Training identities of each dataset's train split (the counts the released checkpoints' classifiers have;
# a multi-source model offsets the ids per source, so its count is the sum).
TRAIN_IDS = {"market1501": 751, "dukemtmc": 702, "msmt17": 1041, "cuhk03": 767}

_RELEASED_NAME = re.compile(r"source_(.+)\.pth?")


def preset_for_checkpoint(path: str | Path) -> str:
    """The shipped preset of a released checkpoint's setting, from its name: ``source_ma.pth`` → ``ma_to_ms``."""
    match = _RELEASED_NAME.fullmatch(Path(path).name)
    candidates = [p for p in preset_names() if match and p.startswith(match.group(1) + "_to_")]
    if len(candidates) != 1:
        raise CheckpointError(
            f"{path}: cannot tell the setting from the file name (the released ones are source_<sources>.pth, "
            "e.g. source_ma.pth); pass --config PRESET_OR_YAML"
        )
    return candidates[0]


def expected_num_ids(config: DCACConfig, data_root: str | Path | None) -> tuple[int, str] | None:
    """The identity count the config's sources give, and where it comes from; None when it cannot be known.

    With a data root the datasets are read; without one, the paper's four datasets have known counts.
    """
    if data_root is not None:
        from dcac.data.protocols import build_protocol

        sources = list(config.data.sources)
        protocol = build_protocol(sources, sources[:1], data_root, all_splits=config.data.all_splits)
        return protocol.train.num_ids, f"the training set of {'+'.join(sources)} under {data_root}"
    from dcac.data.datasets import canonical_name

    names = [canonical_name(s) for s in config.data.sources]
    if config.data.all_splits or not all(n in TRAIN_IDS for n in names):
        return None
    return sum(TRAIN_IDS[n] for n in names), f"the train split{'s' if len(names) > 1 else ''} of {'+'.join(names)}"


def import_official_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    config: DCACConfig,
    *,
    data_root: str | Path | None = None,
    with_teacher: bool = True,
    official_eval: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write the run folder ``out`` for a released checkpoint; returns its ``run_info``.

    ``with_teacher=False`` ignores ``denoiser.*`` (evaluation and deployment need only the Re-ID model);
    ``official_eval``: see :func:`_imported_run_info`.
    A folder that holds a run is refused unless ``overwrite``, which replaces that run whole once the checkpoint
    has been read and checked (a failing import leaves it as it was).
    """
    from dcac.storage.run_lock import RunFolderTakenError, clear_run_folder, holds_run, lock_run_folder

    out = Path(out)
    with lock_run_folder(out, "dcac import"):
        if holds_run(out) and not overwrite:
            raise RunFolderTakenError(
                f"--out {out} holds another run: pass --overwrite to replace it whole, or choose another folder"
            )
        reid, teacher, run_info = _read_official(
            checkpoint, config, data_root, with_teacher=with_teacher, official_eval=official_eval
        )
        if overwrite:
            clear_run_folder(out)
        _write_imported_run(out, config, reid, teacher, run_info)
    return run_info


def _read_official(checkpoint, config: DCACConfig, data_root, *, with_teacher: bool, official_eval: bool):
    """The checked Re-ID (and teacher) tensors of a released checkpoint under dcac's names, and the run info.

    Every shape is checked against the configured model built on the meta device (nothing allocated) before
    the real model is built; non-finite weights are refused.
    """
    # Imported here so that building the command-line parser stays light.
    import torch

    from dcac.models.build import build_reid_model
    from dcac.models.official_checkpoint import (
        OFFICIAL_TEACHER,
        OfficialCheckpointError,
        official_num_ids,
        official_reid_state,
        read_torch_state_dict,
    )
    from dcac.storage.tensor_checks import require_finite

    state = read_torch_state_dict(checkpoint)
    num_ids = official_num_ids(state, checkpoint)
    expected = expected_num_ids(config, data_root)
    if expected is not None and expected[0] != num_ids:
        raise OfficialCheckpointError(
            f"{checkpoint}: its classifier has {num_ids} identities, but {expected[1]} has {expected[0]}: "
            "the checkpoint was trained on other sources than data.sources "
            f"({', '.join(config.data.sources)})"
        )
    with torch.device("meta"):
        shapes_only = build_reid_model(config, num_ids)
    reid = official_reid_state(state, shapes_only, checkpoint)
    require_finite({k: v for k, v in state.items() if not k.startswith(OFFICIAL_TEACHER)}, checkpoint)
    run_info = _imported_run_info(checkpoint, config, num_ids, official_eval)
    teacher_keys = [k for k in state if k.startswith(OFFICIAL_TEACHER)]
    teacher = None
    if teacher_keys and with_teacher:
        from dcac.models.official_teacher import official_teacher_state

        teacher = official_teacher_state({k: state[k] for k in teacher_keys}, config, num_ids, checkpoint)
        require_finite(teacher, checkpoint)
        run_info["teacher_init"] = TEACHER_INIT
    return reid, teacher, run_info


def _write_imported_run(out: Path, config: DCACConfig, reid: dict, teacher: dict | None, run_info: dict) -> None:
    from dcac.models.build import build_reid_model
    from dcac.storage.checkpoint import save_tensors_atomic
    from dcac.storage.run_folder import REID_WEIGHTS, write_run_metadata

    model = build_reid_model(config, run_info["num_ids"])
    model.load_state_dict(reid, strict=True)
    config.train.output_dir = str(out)
    if teacher is not None:
        save_tensors_atomic(teacher, out / TEACHER_INIT)
    save_tensors_atomic(model.state_dict(), out / REID_WEIGHTS)
    write_run_metadata(out, config, run_info)


def _imported_run_info(checkpoint: str | Path, config: DCACConfig, num_ids: int, official_eval: bool) -> dict:
    """The imported run's ``run_info``. ``official_eval`` (default) records ``train.compat=official`` in its
    config: the checkpoint was trained by the official code, so it is evaluated as that code evaluated it
    (bilinear test resize for a single source, :func:`dcac.config.compat.eval_interpolation`); ``False`` keeps the
    config's own setting."""
    import dcac
    from dcac.config.compat import eval_interpolation

    if official_eval:
        config.train.compat = "official"
        config.checked_and_resolved()
    return {
        "num_ids": num_ids,
        "sources": list(config.data.sources),
        "targets": list(config.data.targets),
        "dcac_version": dcac.__version__,
        "imported_from": str(checkpoint),
        "eval_interpolation": eval_interpolation(config),
    }


def initialise_from_run(model, run_dir: str | Path) -> None:
    """``train.init_from``: start a training module (``build_dcac``) from a run folder's weights, in place.

    The Re-ID model (encoder, BNNeck, classifier) must match exactly, identity count included; the teacher's
    LoRA and ID prompts come from ``teacher_init.safetensors`` when the folder has one and the model a teacher.
    """
    from dcac.models.official_teacher import DCAC_PROMPTS, load_teacher_init
    from dcac.storage.checkpoint import load_tensors
    from dcac.storage.run_folder import REID_WEIGHTS
    from dcac.storage.tensor_checks import require_finite

    run_dir = Path(run_dir)
    reid = load_tensors(run_dir / REID_WEIGHTS)
    require_finite(reid, run_dir / REID_WEIGHTS)
    classifier = reid.get("classifier.weight")
    if (
        classifier is not None
        and model.reid.classifier is not None
        and classifier.shape != model.reid.classifier.weight.shape
    ):
        raise CheckpointError(
            f"train.init_from={run_dir}: its classifier has {classifier.shape[0]} identities, "
            f"this run's sources have {model.reid.classifier.weight.shape[0]}"
        )
    missing, unexpected = model.reid.load_state_dict(reid, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"train.init_from={run_dir}: {REID_WEIGHTS} does not fit this run's Re-ID model: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    teacher_file = run_dir / TEACHER_INIT
    if model.teacher is not None and teacher_file.is_file():
        tensors = load_tensors(teacher_file)
        require_finite(tensors, teacher_file)
        if DCAC_PROMPTS not in model.state_dict():  # the instance ablation conditions without prompts
            tensors.pop(DCAC_PROMPTS)
        skipped = load_teacher_init(model, tensors)
        if skipped:
            print(
                f"train.init_from: {len(skipped)} official q/k/v biases not loaded: this teacher's q/k/v are bias-free"
            )
