"""The ``dcac`` command line: train, evaluate, try the demo, make synthetic data, and use a trained model."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dcac.runtime.cpu_threads import limit_threads_for_tiny_models, use_passive_wait

use_passive_wait()  # before anything below imports torch

from dcac.cli.arguments import (  # noqa: E402
    add_checkpoint_argument,
    add_device_argument,
    add_on_corrupt_argument,
    check_output_dir,
    check_output_file,
    resolve_device,
)
from dcac.config import load_config, preset_names  # noqa: E402


def _cmd_train(args: argparse.Namespace) -> int:
    from dcac.engine.trainer import train
    from dcac.inference.report import write_training_report

    config = load_config(args.config, args.overrides)
    check_output_dir(config.train.output_dir, "train.output_dir")
    result = train(config, resume=not args.no_resume, on_evaluation=write_training_report)
    if result.is_main_process:
        print(f"run folder: {result.run_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from dcac.cli.evaluate import evaluate_target, local_checkpoint, write_eval_report
    from dcac.models.build import load_reid_model
    from dcac.storage.checkpoint import write_json_atomic

    if args.out:
        check_output_file(args.out)
    checkpoint = local_checkpoint(args.checkpoint, writes_into_run="--report" if args.report else None)
    device = resolve_device(args.device)
    model, config, _ = load_reid_model(checkpoint, device=device)
    if args.before_bn:
        config.eval.after_bn = False
    config.eval.flip_test = config.eval.flip_test or args.flip_test
    config.eval.metric = args.metric or config.eval.metric
    root = args.root or config.data.root
    results = {}
    for name in args.target:
        results[name] = evaluate_target(
            model,
            name,
            root,
            config,
            device,
            option_args=args.option,
            rerank=args.rerank,
            splits=args.splits,
            roc_fprs=tuple(args.fpr) if args.roc else None,
            on_corrupt=args.on_corrupt,
        )
    if args.report:
        write_eval_report(checkpoint, results)
    if args.out:
        write_json_atomic(args.out, results)
    else:
        print(
            json.dumps(
                {
                    k: {m: v for m, v in r.items() if m not in ("cmc", "verification", "splits")}
                    for k, r in results.items()
                },
                indent=2,
            )
        )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dcac.demo.run import run_demo

    limit_threads_for_tiny_models()
    run_demo(Path(args.out), epochs=args.epochs, seed=args.seed, seeds=args.seeds, ablations=args.ablations)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from dcac.demo.synthetic import write_synthetic

    out = check_output_dir(args.out)
    try:
        written = write_synthetic(out, seed=args.seed, overwrite=args.overwrite)
    except FileExistsError as err:
        raise ValueError(str(err).replace("overwrite=True", "--overwrite")) from None
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from dcac.cli.data import load_from_args

    load_from_args(args, verbose=True)
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        print(name)
    return 0


def _add_eval_command(sub) -> None:
    from dcac.cli.evaluate import add_eval_arguments

    p = sub.add_parser("eval", help="evaluate a trained run on target datasets")
    add_checkpoint_argument(p)
    p.add_argument("--target", required=True, nargs="+", help="dataset name(s) or path(s), e.g. market1501 /data/shop")
    p.add_argument("--root", help="data root (default: the run's data.root)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (eval.k1/k2/lambda_value)")
    p.add_argument("--before-bn", action="store_true", help="use the feature before the BNNeck")
    p.add_argument(
        "--flip-test", action="store_true", help="average each image's feature with its mirror's (eval.flip_test)"
    )
    p.add_argument("--metric", choices=("euclidean", "cosine"))
    add_device_argument(p)
    p.add_argument("--out", help="write the metrics to this JSON file")
    add_on_corrupt_argument(p)
    add_eval_arguments(p)
    p.set_defaults(func=_cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    from dcac.cli.data import add_check_command, add_dataset_arguments, add_split_command
    from dcac.cli.evaluate import add_calibrate_command

    parser = argparse.ArgumentParser(prog="dcac", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train DCAC (or the baseline) on a preset or YAML config")
    p.add_argument("--config", required=True, help=f"a preset ({', '.join(preset_names())}) or a YAML file")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.root=/data optim.epochs=10")
    p.add_argument(
        "--no-resume", action="store_true", help="start over: the run already in the output folder is replaced whole"
    )
    p.set_defaults(func=_cmd_train)

    _add_eval_command(sub)

    p = sub.add_parser("demo", help="synthetic data + tiny models on CPU: baseline vs DCAC on an unseen domain")
    p.add_argument("--out", default="runs/demo", help="demo folder (data and runs)")
    p.add_argument("--epochs", type=int, default=None, help="override the demo preset's epochs")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (mean ± std over seed .. seed+N-1)")
    p.add_argument("--ablations", action="store_true", help="also the hard and instance conditionings")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("synth", help="write the synthetic multi-domain datasets")
    q.add_argument("--out", required=True)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--overwrite", action="store_true", help="replace synthetic domains already in --out")
    q.set_defaults(func=_cmd_synth)
    q = data_sub.add_parser("stats", help="print a dataset's statistics table (a name, or the path of your data)")
    add_dataset_arguments(q)
    q.set_defaults(func=_cmd_stats)
    add_check_command(data_sub)
    add_split_command(data_sub)
    add_calibrate_command(sub)

    p = sub.add_parser("presets", help="list the shipped config presets")
    p.set_defaults(func=_cmd_presets)

    from dcac.cli.inference import add_commands

    add_commands(sub)

    from dcac.cli.track import add_track_command

    add_track_command(sub)

    from dcac.cli.official import add_import_command

    add_import_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        from dcac.runtime.user_errors import error_line, is_user_error

        if os.environ.get("DCAC_DEBUG") or not is_user_error(err):
            raise
        print(f"dcac {args.command}: error: {error_line(err)}", file=sys.stderr)
        print("(set DCAC_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2
