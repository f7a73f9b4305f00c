"""The dataset parts of the command line: ``dcac data check`` (and the options ``data stats`` shares)."""

from __future__ import annotations

import argparse


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """NAME-or-PATH, ``--root``, ``--layout`` and ``--option`` for commands that load one dataset."""
    parser.add_argument("name", help="a dataset name (market1501, ms, ...) or the path of your own dataset")
    parser.add_argument("--root", default="data", help="data root for a dataset given by name (default: data)")
    parser.add_argument(
        "--layout",
        choices=("auto", "market", "folders", "csv"),
        help="for a dataset given by path: its layout (default: detected)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loader option (repeatable), e.g. use_val=false, variant=labeled, split=3, on_error=skip",
    )


def load_from_args(args: argparse.Namespace, *, verbose: bool):
    from dcac.data import get_dataset
    from dcac.data.options import parse_options

    options = parse_options(args.option)
    if args.layout:
        options["layout"] = args.layout
    return get_dataset(args.name, args.root, verbose=verbose, **options)


def _cmd_check(args: argparse.Namespace) -> int:
    from dcac.data.check import check_dataset

    report = check_dataset(load_from_args(args, verbose=False), num_workers=args.workers)
    print(report.format())
    return 1 if report.problems else 0


def add_check_command(data_sub) -> None:
    q = data_sub.add_parser(
        "check",
        help="counts, single-image identities, unreadable and duplicate images, "
        "and what would be dropped: before training",
    )
    add_dataset_arguments(q)
    q.add_argument("--workers", type=int, default=4, help="threads decoding the images")
    q.set_defaults(func=_cmd_check)
