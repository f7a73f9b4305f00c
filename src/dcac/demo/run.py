"""``dcac demo``: the whole method on a laptop CPU in a few minutes, measured over seeds.

Per seed it writes the synthetic multi-domain data, trains the Baseline (Re-ID model alone) and DCAC (Re-ID
model + LoRA-adapted diffusion teacher + correlation-aware conditioning) with tiny models on two domains, and
evaluates them on a third domain none has seen, next to chance level and the untrained model. DCAC's teacher
is the miniature pre-trained one shipped with the package (:mod:`dcac.demo.teacher`: pre-trained once on a
synthetic world that never shows the target domain's look). Every epoch measures the mechanism on a fixed batch
(:mod:`dcac.demo.mechanism`), and the arms are compared paired by seed (:mod:`dcac.demo.verdict`). With ``ablations`` the ``hard`` (c = P[y])
and ``instance`` (c = W f_bn) conditionings run too. The numbers are a demonstration at toy scale, not the
paper's claim: that needs CLIP and Stable Diffusion weights and the real datasets.

Layout: the first seed's data and runs sit directly in the demo folder (``data/``, ``baseline/``, ``dcac/``,
...), each further seed's in ``seed_<s>/``; ``demo_results.json`` and ``per_seed.csv`` hold every seed's
numbers, the mean ± standard deviation and the paired differences, and what the numbers depend on (torch
version, threads, CPU); ``comparison.html`` shows the arms side by side.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from dcac.config import DCACConfig, load_config
from dcac.data.protocols import build_protocol
from dcac.demo.environment import environment
from dcac.demo.mechanism import MechanismProbe
from dcac.demo.synthetic import write_synthetic
from dcac.demo.teacher import SHIPPED_TEACHER
from dcac.demo.verdict import VERDICT_METRICS, paired_difference, paired_lines, write_comparison_page
from dcac.engine.resume import seed_everything
from dcac.engine.trainer import train
from dcac.evaluation import evaluate_features
from dcac.evaluation.features import image_loader
from dcac.evaluation.targets import evaluate_on_target, summarize
from dcac.inference.report import write_training_report
from dcac.inference.training_log import read_training_log
from dcac.models.build import build_reid_model
from dcac.storage.checkpoint import write_json_atomic, write_text_atomic
from dcac.storage.run_folder import LOG, REID_WEIGHTS

#: Each arm: its table label and the config overrides that make it.
ARMS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("Baseline (no teacher)", ["conditioning.variant=none"]),
    "dcac": ("DCAC (c = softmax(z/t) P)", []),
    "hard": ("ablation hard (c = P[y])", ["conditioning.variant=hard"]),
    "instance": ("ablation instance (W f_bn)", ["conditioning.variant=instance"]),
}
#: What the table reports per arm, as (key, column title).
COLUMNS = (("mAP", "mAP"), ("rank1", "R1"), ("rank5", "R5"), ("train_acc", "train acc"), ("seconds", "train s"))


def run_demo(
    out: Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    seeds: int = 1,
    ablations: bool = False,
    teacher: Path = SHIPPED_TEACHER,
) -> dict:
    """Run every arm for seeds ``seed .. seed + seeds - 1``; print and write the per-seed numbers, mean ± std and
    the paired differences with their verdict; write the comparison page."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    print(f"pre-trained teacher: {teacher}")
    setting = environment()
    print(
        f"torch {setting['torch']}, {setting['threads']} thread(s), {setting['cpu']} ({setting['cpu_capability']}): "
        "the numbers repeat bit for bit only with the same three (README 'The demo')"
    )
    arms = ["baseline", "dcac"] + (["hard", "instance"] if ablations else [])
    per_seed = []
    for s in range(seed, seed + seeds):
        print(f"\n=== seed {s} ({s - seed + 1}/{seeds}) ===", flush=True)
        per_seed.append(run_seed(_seed_folder(out, s, seed), s, arms, teacher, epochs))
    summary = {
        "seeds": list(range(seed, seed + seeds)),
        "arms": arms,
        "per_seed": per_seed,
        "mean": _aggregate(per_seed, statistics.fmean),
        "std": _aggregate(per_seed, _std),
        "paired": {arm: {key: paired_difference(per_seed, arm, key) for key, _ in VERDICT_METRICS} for arm in arms[1:]},
        "environment": setting,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print("\n" + format_summary(summary))
    write_json_atomic(out / "demo_results.json", summary)
    write_text_atomic(out / "per_seed.csv", per_seed_csv(per_seed))
    mechanism = {arm: [mechanism_log(_seed_folder(out, s, seed) / arm) for s in summary["seeds"]] for arm in arms}
    page = write_comparison_page(out, summary, {arm: ARMS[arm][0] for arm in arms}, mechanism)
    print(
        f"total wall time {summary['total_seconds']:.1f} s; per-seed numbers: {out / 'per_seed.csv'}; "
        f"the arms side by side: {page}; run folders (report.html each): {', '.join(str(out / a) for a in arms)}"
    )
    return summary


def run_seed(folder: Path, seed: int, arms: list[str], teacher: Path, epochs: int | None) -> dict:
    """One seed: fresh data, chance level, the untrained model, then every arm trained and scored."""
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = folder / "data"
    write_synthetic(data_dir, seed=seed, num_train_ids=48, num_test_ids=48, overwrite=True)
    common = [f"data.root={data_dir}", f"train.seed={seed}", f"diffusion.weights={teacher}"]
    common += [f"optim.epochs={epochs}"] if epochs else []
    configs = {arm: load_config("demo", common + ARMS[arm][1] + [f"train.output_dir={folder / arm}"]) for arm in arms}
    reference = configs[arms[0]]
    protocol = build_protocol(reference.data.sources, reference.data.targets, reference.data.root)
    target_name, target = next(iter(protocol.targets.items()))
    seed_everything(seed)
    untrained = evaluate_on_target(build_reid_model(reference, protocol.train.num_ids), target, reference).metrics
    result = {
        "seed": seed,
        "num_ids": protocol.train.num_ids,
        "target": target_name,
        "chance": _headline(chance_level(target, seed)),
        "untrained": _headline(untrained),
        "cmc": {},
    }
    probe = MechanismProbe(protocol.train.records, reference)
    for arm in arms:
        print(f"\n--- seed {seed}, arm {arm}: {ARMS[arm][0]} ---", flush=True)
        t0 = time.perf_counter()
        metrics = train(configs[arm], resume=False, on_evaluation=write_training_report, on_epoch=probe).metrics[
            target_name
        ]
        result["cmc"][arm] = metrics["cmc"][:20]
        result[arm] = {
            **_headline(metrics),
            "seconds": round(time.perf_counter() - t0, 1),
            "train_acc": training_accuracy(configs[arm], protocol.train.records, protocol.train.num_ids),
            **last_epoch_identity_information(folder / arm),
        }
    return result


def _seed_folder(out: Path, seed: int, first_seed: int) -> Path:
    return out if seed == first_seed else out / f"seed_{seed}"


def mechanism_log(run_dir: Path) -> list[dict]:
    """The run's per-epoch mechanism measurements (``"event": "mechanism"`` lines of its log)."""
    return read_training_log(run_dir / LOG).mechanism


def chance_level(target, seed: int) -> dict:
    """The metrics of a ranking by random features."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(len(target.query), 32, generator=generator), dim=1)
    g = torch.nn.functional.normalize(torch.randn(len(target.gallery), 32, generator=generator), dim=1)
    return summarize(
        evaluate_features(
            q,
            g,
            *target.labels(),
        )
    )


@torch.no_grad()
def training_accuracy(config: DCACConfig, records, num_ids: int) -> float:
    """Top-1 ID accuracy (%) of the trained classifier on the un-augmented training images."""
    model = build_reid_model(config, num_ids)
    model.load_state_dict(load_file(str(Path(config.train.output_dir) / REID_WEIGHTS)))
    model.eval()
    correct = 0
    for batch in image_loader(records, config.data.height, config.data.width, config.data.test_batch_size, 0):
        correct += int((model(batch["image"]).logits.argmax(dim=1) == batch["pid"]).sum())
    return 100.0 * correct / len(records)


def last_epoch_identity_information(run_dir: Path) -> dict:
    """The last epoch's means of p's entropy, p(true id) and the diffusion loss, and the last epoch's mechanism
    measurements on the fixed batch, from the run's log."""
    log = read_training_log(run_dir / LOG)
    last = log.epoch_means[-1] if log.epoch_means else {}
    values = {key: last[key] for key in ("p_entropy", "p_true", "loss_diff") if key in last}
    probe = log.mechanism[-1] if log.mechanism else {}
    return values | {key: probe[key] for key in ("cond_gain", "grad_ratio", "grad_cosine") if key in probe}


def _headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("mAP", "rank1", "rank5")}


def _std(values: list[float]) -> float | None:
    """The sample standard deviation; None for one seed (undefined, and JSON has no NaN)."""
    return statistics.stdev(values) if len(values) > 1 else None


def _aggregate(per_seed: list[dict], reduce) -> dict:
    """``reduce`` of every numeric entry of every arm (and of chance / untrained) across the seeds."""
    rows = [k for k, v in per_seed[0].items() if isinstance(v, dict) and k != "cmc"]
    return {row: {key: reduce([s[row][key] for s in per_seed]) for key in per_seed[0][row]} for row in rows}


def _cell(mean: dict, std: dict, key: str) -> str:
    if key not in mean:
        return ""
    return f"{mean[key]:.1f}" if std[key] is None else f"{mean[key]:.1f} ± {std[key]:.1f}"


def format_summary(summary: dict) -> str:
    """The mean ± std table over the seeds, and one line on how much identity information the condition carries."""
    first = summary["per_seed"][0]
    seeds = summary["seeds"]
    spread = "mean ± std over seeds" if len(seeds) > 1 else "one seed: no spread, no verdict"
    lines = [
        f"unseen domain {first['target']}, {len(seeds)} seed(s) {seeds[0]}..{seeds[-1]}: {spread}",
        "| model                      | " + " | ".join(f"{title:>11}" for _, title in COLUMNS) + " |",
        "|----------------------------|" + "|".join("-" * 13 for _ in COLUMNS) + "|",
    ]
    labels = {"chance": "chance (random feats)", "untrained": "untrained model"}
    labels.update({arm: ARMS[arm][0] for arm in summary["arms"]})
    for row, label in labels.items():
        cells = [_cell(summary["mean"][row], summary["std"][row], key) for key, _ in COLUMNS]
        lines.append(f"| {label:<26} | " + " | ".join(f"{c:>11}" for c in cells) + " |")
    lines.append(identity_line(summary))
    lines.append(mechanism_line(summary))
    if "paired" in summary:
        lines.extend(paired_lines(summary))
    return "\n".join(lines)


def mechanism_line(summary: dict) -> str:
    """One line: each teacher arm's condition gain and the diffusion gradient into z (last epoch, fixed batch)."""
    parts = []
    for arm in summary["arms"]:
        values = summary["mean"][arm]
        if "cond_gain" in values:
            cosine = f"{values['grad_cosine']:+.2f}" if "grad_cosine" in values else "n/a (c does not depend on z)"
            parts.append(
                f"{arm}: condition gain {100 * values['cond_gain']:.1f} %, |dL_diff/dz| = "
                f"{100 * values['grad_ratio']:.2g} % of |dL_id/dz|, cos with onehot(y) - p {cosine}"
            )
    return "the teacher's push on the logits (last epoch, fixed batch): " + ("; ".join(parts) or "not measured")


def identity_line(summary: dict) -> str:
    """One line: p's entropy and p(true id) at the last epoch (vs uniform), and each teacher arm's L_diff."""
    num_ids = summary["per_seed"][0]["num_ids"]
    mean = summary["mean"]
    condition = mean["dcac"]
    diffusion = ", ".join(f"{arm} {mean[arm]['loss_diff']:.3f}" for arm in summary["arms"] if "loss_diff" in mean[arm])
    return (
        f"identity information in DCAC's condition p (last epoch): entropy {condition['p_entropy']:.2f} nats "
        f"(uniform ln {num_ids} = {math.log(num_ids):.2f}), p(true id) {condition['p_true']:.3f} "
        f"(chance {1 / num_ids:.3f}); diffusion loss {diffusion}"
    )


def per_seed_csv(per_seed: list[dict]) -> str:
    """One line per (seed, arm) with every number recorded for it."""
    rows = [
        {"seed": s["seed"], "arm": arm, **values}
        for s in per_seed
        for arm, values in s.items()
        if isinstance(values, dict) and arm != "cmc"
    ]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
