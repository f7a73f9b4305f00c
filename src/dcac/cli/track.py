"""``dcac track``: the command line of :mod:`dcac.inference.track_results` (MOT files + frames or videos →
track features and cross-camera matches). Building the parser imports neither torch nor PIL."""

from __future__ import annotations

import argparse
from pathlib import Path

from dcac.cli.arguments import add_checkpoint_argument, add_device_argument, check_output_dir, resolve_device


def _cmd_track(args: argparse.Namespace) -> int:
    from dcac.inference.predictor import ReIDPredictor
    from dcac.inference.track_results import TRACKS_FILE, parse_cameras, write_track_results

    cameras = parse_cameras(args.camera)
    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    check_output_dir(args.out)
    predictor = ReIDPredictor.from_run(args.checkpoint, device=resolve_device(args.device))
    count, html_path = write_track_results(
        predictor,
        cameras,
        args.out,
        checkpoint=args.checkpoint,
        topk=args.topk,
        min_conf=args.min_conf,
        max_crops_per_track=args.max_crops or None,
        frame_pattern=args.frame_pattern,
        batch_size=args.batch_size,
        html_queries=args.html_queries,
    )
    print(
        f"{count} tracks of {len(cameras)} camera(s) -> {Path(args.out) / TRACKS_FILE}, "
        f"matches of each track in the other cameras -> {html_path}"
    )
    return 0


def add_track_command(subparsers) -> None:
    p = subparsers.add_parser(
        "track", help="MOT-format tracks + frames or video -> track features and cross-camera matches (results.html)"
    )
    p.add_argument(
        "--camera",
        action="append",
        nargs="+",
        required=True,
        metavar="MOT_FILE FRAMES [NAME]",
        help="a camera (repeatable): its MOT file (frame,id,left,top,width,height,conf,...), its frame folder "
        "(000001.jpg ...) or video, and optionally a name (default: the sequence folder)",
    )
    add_checkpoint_argument(p)
    add_device_argument(p)
    p.add_argument("--out", default="track_results", help="output folder (default: track_results)")
    p.add_argument("--topk", type=int, default=5, help="matches listed per track")
    p.add_argument("--min-conf", type=float, help="keep boxes whose 7th column is at least this (gt.txt: 1)")
    p.add_argument("--max-crops", type=int, default=32, help="crops pooled per track, evenly spread (0: all)")
    p.add_argument("--frame-pattern", help="frame file names in a frame folder (default: {frame:06d}.jpg)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's data.test_batch_size")
    p.add_argument("--html-queries", type=int, default=100, help="tracks shown in results.html (default 100)")
    p.set_defaults(func=_cmd_track)
