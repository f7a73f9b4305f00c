"""The official-code harness: its config reader, and one tiny run of the official step beside dcac's rows.

Needs a clone of the official repository (path in DCAC_OFFICIAL_DIR) and its imports loralib and einops;
skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
OFFICIAL = Path(os.environ.get("DCAC_OFFICIAL_DIR", "/nonexistent"))
needs_clone = pytest.mark.skipif(
    not (OFFICIAL / "model" / "diffusion_wrapper.py").is_file(),
    reason="set DCAC_OFFICIAL_DIR to a clone of the official DCAC code",
)


@needs_clone
def test_official_config_is_the_experiment_file_over_its_yaml_caps():
    sys.path.insert(0, str(BENCHMARKS))
    from official_step import load_official_config

    cfg = load_official_config(OFFICIAL, {"SD.UNET.MODEL_CHANNELS": 32})
    assert cfg.SD.UNET.LORA_RANK == 8 and cfg.SD.UNET.CONDITION_BOTTLENECK_TAU == 0.6  # set by cfg.py
    assert cfg.SOLVER.STAGE2.IMS_PER_BATCH == 64 and cfg.INPUT.SIZE_TRAIN == [256, 128]  # from the YAML caps
    assert cfg.SD.UNET.MODEL_CHANNELS == 32 and cfg.SD.UNET.PRETRAIN == ""  # overrides; nothing is loaded
    assert not cfg.SD.UNET.NO_SUCH_KEY  # missing keys read as empty, as alchemy_cat's do


@needs_clone
def test_official_row_runs_beside_dcac_rows(tmp_path):
    pytest.importorskip("loralib")
    pytest.importorskip("einops")
    out = tmp_path / "train_step.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "train_step.py"),
            "--tiny",
            "--official",
            str(OFFICIAL),
            "--variants",
            "dcac+per_step_reads,dcac",
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {row["name"]: row for row in result["variants"]}
    assert list(rows) == ["official", "dcac+per_step_reads", "dcac"]
    official = rows["official"]
    assert official["status"] == "ok" and official["images_per_s"] > 0 and official["peak_memory_bytes"] > 0
    assert official["requested_precision"] == "fp16" and official["precision"] == "fp32"  # CPU: no autocast
    assert len(official["official_commit"]) == 40 and not official["cache_latents"]
    assert set(official["last_losses"]) == {"ldm", "ce", "pcl", "total", "ce_acc", "pcl_acc"}
    assert official["speedup_vs_official"] == 1.0 and rows["dcac+per_step_reads"]["speedup_vs_v01"] == 1.0
    assert rows["dcac"]["speedup_vs_official"] == rows["dcac"]["images_per_s"] / official["images_per_s"]
    assert rows["dcac"]["read_every_step"] is False and rows["dcac+per_step_reads"]["read_every_step"] is True
