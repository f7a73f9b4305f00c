"""Sharing a trained run on the Hugging Face Hub: ``dcac push RUN org/name``.

A pushed repository is a run folder (``config.yaml``, ``run_info.json``, ``reid_model.safetensors``,
``metrics.json`` when the run was evaluated, ``verification.json`` when it was calibrated) plus a generated
model card ``README.md``, so
``dcac.load("org/name")`` rebuilds it exactly as it rebuilds a local run (``dcac.hub.download``).
The files are staged in a folder first (``stage_run``; ``dcac push --stage-only DIR`` stops there, to look
at the card before anything leaves the machine), then sent in one commit with ``HfApi.upload_folder``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open

from dcac.config import load_run_config
from dcac.data.transforms import MEAN_STD_HALF
from dcac.hub.model_card import model_card
from dcac.storage.checkpoint import write_text_atomic
from dcac.storage.errors import CheckpointError
from dcac.storage.run_folder import PUBLISHED_FILES, REID_WEIGHTS, RUN_CONFIG, resolve_run


class HubPushError(ValueError):
    """The Hub refused or could not be reached; the message names the repository and what to do."""


def _hub_errors() -> tuple[type[BaseException], ...]:
    from dcac.runtime.user_errors import network_errors

    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        return network_errors()
    return (*network_errors(), HfHubHTTPError)


CARD = "README.md"
# The BNNeck's weight: its length is the size of the feature the model returns.
_FEATURE_KEY = "bottleneck.weight"


def _feature_size(weights: Path) -> int:
    with safe_open(weights, framework="pt") as tensors:
        if _FEATURE_KEY not in tensors.keys():
            raise CheckpointError(f"{weights} is not a dcac Re-ID model: it has no {_FEATURE_KEY}")
        return tensors.get_slice(_FEATURE_KEY).get_shape()[0]


def stage_run(run_dir: str | Path, repo_id: str, out_dir: str | Path) -> Path:
    """Copy what a Hub repository of the run holds into ``out_dir`` and write its model card there."""
    run_dir, weights = resolve_run(run_dir)
    config = load_run_config(run_dir / RUN_CONFIG)
    feat_dim = _feature_size(weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED_FILES:
        source = weights if name == REID_WEIGHTS else run_dir / name
        if source.is_file():
            shutil.copyfile(source, out_dir / name)
    card = model_card(run_dir, repo_id, config, feat_dim, list(MEAN_STD_HALF), list(MEAN_STD_HALF))
    write_text_atomic(out_dir / CARD, card)
    return out_dir


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> str:
    """Create ``repo_id`` (if needed) and upload the staged run in one commit; return the commit URL.

    ``api``: an ``huggingface_hub.HfApi`` (default: a new one, using ``token`` or the saved login)."""
    if api is None:
        try:
            from huggingface_hub import HfApi
        except ImportError as err:
            raise ImportError("dcac push needs huggingface_hub: pip install 'dcac[hub]'") from err
        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="dcac-push-") as staging:
        folder = stage_run(run_dir, repo_id, staging)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                commit_message=commit_message or f"dcac push of {Path(run_dir).resolve().name}",
            )
        except _hub_errors() as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HubPushError(
                f"pushing {run_dir} to {repo_id} failed: {first_line} (network access and a write token are needed: "
                "hf auth login, HF_TOKEN or --token)"
            ) from err
    return str(getattr(commit, "commit_url", commit))
