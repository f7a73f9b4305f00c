"""The verification parts of the command line: ``dcac eval --roc / --splits / --option`` and ``dcac calibrate``."""

from __future__ import annotations

import argparse
from typing import Any

from dcac.cli.arguments import (
    add_checkpoint_argument,
    add_dataset_option_argument,
    add_device_argument,
    resolve_device,
)

DEFAULT_CALIBRATION_FPR = 1e-3


def false_positive_rate(text: str) -> float:
    """argparse type of ``--fpr`` (``eval --roc``, ``calibrate``): a number with 0 < FPR < 1."""
    from dcac.evaluation.roc import check_fpr

    try:
        return check_fpr(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a false-positive rate with 0 < FPR < 1, got {text}") from None


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_option_argument(parser)
    parser.add_argument(
        "--splits", help="classic small test sets: score these splits and their mean ('all' = 0-9, '0-4', '0,3,7')"
    )
    parser.add_argument(
        "--roc",
        action="store_true",
        help="verification: TPR at FPR 1e-4/1e-3/1e-2 (and --fpr), EER, distance histograms",
    )
    parser.add_argument(
        "--fpr",
        type=false_positive_rate,
        action="append",
        default=[],
        help="with --roc: also the threshold for this FPR (repeatable)",
    )
    parser.add_argument(
        "--report", action="store_true", help="rewrite RUN/report.html with these metrics (and the --roc section)"
    )


def local_checkpoint(checkpoint: str, *, writes_into_run: str | None = None) -> str:
    """``--checkpoint`` as a local path: a Hub id is fetched into (or found in) the Hugging Face cache.

    ``writes_into_run`` names what would write into the run folder (``--report``, ``dcac calibrate``): the
    Hub cache is no place for outputs, so with a Hub id that is an error saying what to do instead.
    """
    from dcac.hub.download import RUN_FILES, parse_hub_id, resolve_weights

    if writes_into_run and parse_hub_id(checkpoint):
        raise ValueError(
            f"{writes_into_run} writes into the run folder, and --checkpoint {checkpoint} is a Hub id: download the "
            f"run to a folder of yours (hf download {checkpoint} --local-dir RUN) and pass RUN"
        )
    return str(resolve_weights(checkpoint, RUN_FILES, what="--checkpoint"))


def _dataset_options(config, option_args: list[str]) -> dict[str, dict[str, Any]]:
    from dcac.data.options import parse_dataset_options

    options = {name: dict(values) for name, values in config.data.options.items()}
    for name, values in parse_dataset_options(option_args).items():
        options.setdefault(name, {}).update(values)
    return options


def format_verification(name: str, metrics: dict[str, Any]) -> str:
    lines = [
        f"{name} verification ({metrics['num_genuine_pairs']} same-identity / "
        f"{metrics['num_impostor_pairs']} different-identity pairs; {metrics['rule']}):"
    ]
    for key, point in metrics["tpr_at_fpr"].items():
        lines.append(
            f"  FPR <= {key:<6}: TPR {100 * point['tpr']:.2f}%  (threshold {point['threshold']:.6g}, "
            f"FPR {point['fpr']:.2e})"
        )
    lines.append(f"  EER {100 * metrics['eer']:.2f}% at threshold {metrics['eer_threshold']:.6g}")
    return "\n".join(lines)


def evaluate_target(
    model,
    name: str,
    root: str,
    config,
    device,
    *,
    option_args: list[str],
    rerank: bool = False,
    splits: str | None = None,
    roc_fprs: tuple[float, ...] | None = None,
    on_corrupt: str = "raise",
) -> dict[str, Any]:
    """One ``--target`` of ``dcac eval``: plain, over ``splits``, and (``roc_fprs``: the extra FPRs) with the
    verification metrics; prints as it goes."""
    from dcac.data import get_dataset
    from dcac.data.options import options_for
    from dcac.data.target_check import checked_target
    from dcac.evaluation.classic_splits import evaluate_splits, parse_splits
    from dcac.evaluation.roc import DEFAULT_FPRS, verification_metrics
    from dcac.evaluation.targets import evaluate_on_target, format_metrics

    options = options_for(name, _dataset_options(config, option_args))
    suffix = " (re-ranked)" if rerank else ""
    if splits:
        splits = parse_splits(splits)
        result = evaluate_splits(
            model,
            lambda k: get_dataset(name, root, **{**options, "split": k}),
            splits,
            config,
            device=device,
            rerank=rerank,
        )
        for k, metrics in result["splits"].items():
            print(format_metrics(f"{name} split {k}{suffix}", metrics))
        print(format_metrics(f"{name} mean of {len(splits)} splits{suffix}", result["mean"]))
        return result
    target, skipped = checked_target(
        get_dataset(name, root, verbose=True, **options), on_corrupt, num_workers=max(config.data.num_workers, 1)
    )
    if skipped:
        print(f"skipped {skipped} unreadable images of {name}")
    evaluation = evaluate_on_target(model, target, config, device=device, rerank=rerank, progress=True)
    result = dict(evaluation.metrics)
    print(format_metrics(target.name + suffix, result))
    if roc_fprs is not None:
        fprs = tuple(dict.fromkeys((*DEFAULT_FPRS, *roc_fprs)))
        result["verification"] = verification_metrics(
            evaluation.query_feats,
            evaluation.gallery_feats,
            *target.labels(),
            metric=config.eval.metric,
            fprs=fprs,
        )
        print(format_verification(target.name, result["verification"]))
    return result


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from dcac.data import get_dataset
    from dcac.data.options import options_for
    from dcac.evaluation.calibration import calibration_record, target_verification, write_calibration
    from dcac.evaluation.roc import DEFAULT_FPRS
    from dcac.inference.feature_store import file_sha256
    from dcac.inference.tracker_export import boxmot_threshold_line
    from dcac.models.build import load_reid_model
    from dcac.storage.run_folder import resolve_run

    device = resolve_device(args.device)
    checkpoint = local_checkpoint(args.checkpoint, writes_into_run="dcac calibrate")
    # Hashed before loading: weights replaced in between leave the old hash, which dcac.compare then refuses.
    weights_sha256 = file_sha256(resolve_run(checkpoint)[1])
    model, config, _ = load_reid_model(checkpoint, device=device)
    config.eval.flip_test = config.eval.flip_test or args.flip_test
    target = get_dataset(
        args.target,
        args.root or config.data.root,
        verbose=True,
        **options_for(args.target, _dataset_options(config, args.option)),
    )
    fprs = tuple(dict.fromkeys((*DEFAULT_FPRS, args.fpr)))
    metrics = target_verification(model, target, config, fprs=fprs, device=device, progress=True)
    print(format_verification(target.name, metrics))
    record = calibration_record(metrics, args.fpr, target, config, weights_sha256)
    path = write_calibration(resolve_run(checkpoint)[0], record)
    print(
        f"threshold {metrics['tpr_at_fpr'][f'{args.fpr:g}']['threshold']:.6g} (FPR <= {args.fpr:g} on "
        f"{target.name}) written to {path}"
    )
    print(boxmot_threshold_line(record))
    return 0


def add_calibrate_command(sub) -> None:
    p = sub.add_parser("calibrate", help="choose a same/different threshold on a target and store it in the run")
    add_checkpoint_argument(p, hub=False)
    p.add_argument("--target", required=True, help="dataset name or path (query + gallery with known identities)")
    p.add_argument(
        "--fpr",
        type=false_positive_rate,
        default=DEFAULT_CALIBRATION_FPR,
        help=f"false-positive rate the threshold may reach (default {DEFAULT_CALIBRATION_FPR:g})",
    )
    p.add_argument("--root", help="data root (default: the run's data.root)")
    add_dataset_option_argument(p)
    p.add_argument(
        "--flip-test", action="store_true", help="calibrate the flip-test feature (dcac.compare then uses it too)"
    )
    add_device_argument(p)
    p.set_defaults(func=_cmd_calibrate)


def write_eval_report(checkpoint: str, results: dict[str, Any]) -> None:
    from dcac.inference.report import write_report
    from dcac.storage.run_folder import resolve_run

    print(f"report: {write_report(resolve_run(checkpoint)[0], results)}")
