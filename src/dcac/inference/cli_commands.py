"""``dcac extract | search | explain | export``: using a trained run from the command line.

``add_commands(subparsers)`` registers the four subcommands on the main ``dcac`` parser; each command
returns an exit code (0 done, 2 bad input with a message on stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from dcac.cli_checks import add_on_corrupt_argument, check_output_dir, check_output_file, unit_interval


def _device(name: str | None) -> str:
    from dcac.cli_checks import resolve_device  # imports torch: not at the top, so ``dcac --help`` stays light

    return resolve_device(name)


def _load(checkpoint: str, device: str | None):
    from dcac.inference.predictor import ReIDPredictor

    return ReIDPredictor.from_run(checkpoint, device=_device(device))


def _readable(files: list[Path], on_corrupt: str) -> list[Path]:
    """``--on-corrupt skip``: the decodable files, the others counted on stderr; ``raise`` keeps all of them."""
    if on_corrupt == "raise":
        return files
    from dcac.data.image_io import readable_files

    kept, skipped = readable_files(files, "skip")
    if skipped:
        print(f"skipped {skipped} unreadable images", file=sys.stderr)
    return kept


def _fail(command: str, err: Exception) -> int:
    print(f"dcac {command}: error: {err}", file=sys.stderr)
    return 2


def _cmd_extract(args: argparse.Namespace) -> int:
    from dcac.engine.checkpoint import CheckpointError
    from dcac.inference.feature_store import FeatureSet, save_features
    from dcac.inference.image_inputs import list_images

    try:
        check_output_file(args.out)
        predictor = _load(args.checkpoint, args.device)
        folder = Path(args.folder)
        files = _readable(list_images(folder), args.on_corrupt)
        after_bn = not args.before_bn
        feats = predictor.extract(files, batch_size=args.batch_size, after_bn=after_bn, num_workers=args.num_workers, progress=True)
        names = [f.relative_to(folder).as_posix() for f in files]
        save_features(args.out, FeatureSet(feats, names, folder.resolve(), after_bn, str(args.checkpoint)))
    except CheckpointError as err:
        return _fail("extract", err)
    print(f"{len(names)} features ({feats.shape[1]}-d, {'f_bn' if after_bn else 'f'}) -> {args.out}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from dcac.engine.checkpoint import CheckpointError
    from dcac.inference.feature_store import load_features
    from dcac.inference.image_inputs import expand_inputs
    from dcac.inference.ranked_list import ranked_queries_from_paths
    from dcac.inference.ranking import rank
    from dcac.inference.search_page import write_search_results

    try:
        check_output_dir(args.out)
        predictor = _load(args.checkpoint, args.device)
        after_bn = not args.before_bn
        gallery_arg = Path(args.gallery)
        if gallery_arg.is_file():
            stored = load_features(gallery_arg)
            if stored.after_bn != after_bn:
                raise ValueError(
                    f"{gallery_arg} holds {'f_bn' if stored.after_bn else 'f'} features but the query would use "
                    f"{'f_bn' if after_bn else 'f'}: {'drop' if stored.after_bn else 'add'} --before-bn"
                )
            gallery_feats, gallery_paths = stored.features, [str(p) for p in stored.paths()]
        else:
            gallery_files = _readable(expand_inputs(gallery_arg), args.on_corrupt)
            gallery_feats = predictor.extract(gallery_files, batch_size=args.batch_size, after_bn=after_bn)
            gallery_paths = [str(p) for p in gallery_files]
        query_files = _readable(expand_inputs([Path(q) for q in args.queries]), args.on_corrupt)
        query_feats = predictor.extract(query_files, batch_size=args.batch_size, after_bn=after_bn)
        if query_feats.shape[1] != gallery_feats.shape[1]:
            raise ValueError(f"gallery features are {gallery_feats.shape[1]}-d but {args.checkpoint} gives {query_feats.shape[1]}-d features")
        indices, distances = rank(query_feats, gallery_feats, topk=args.topk)
        queries = ranked_queries_from_paths([str(q) for q in query_files], gallery_paths, indices, distances)
        json_path, html_path = write_search_results(args.out, queries, checkpoint=str(args.checkpoint), after_bn=after_bn)
    except CheckpointError as err:
        return _fail("search", err)
    print(f"{len(queries)} queries against {len(gallery_paths)} gallery images -> {json_path}, {html_path}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from dcac.engine.checkpoint import CheckpointError
    from dcac.inference.gradcam import explain_images
    from dcac.inference.image_inputs import expand_inputs

    try:
        check_output_dir(args.out)
        predictor = _load(args.checkpoint, args.device)
        written = explain_images(predictor, expand_inputs([Path(p) for p in args.images]), args.out, target=args.target, alpha=args.alpha)
    except CheckpointError as err:
        return _fail("explain", err)
    print(f"{len(written)} activation maps -> {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from dcac.engine.checkpoint import CheckpointError
    from dcac.engine.run_folder import resolve_run
    from dcac.inference.onnx_export import ExportMismatchError, export_onnx

    try:
        out = check_output_file(args.out if args.out else resolve_run(args.checkpoint)[0] / "reid_model.onnx")
        missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"dcac export needs {', '.join(missing)}: pip install \"dcac[export]\"")
        predictor = _load(args.checkpoint, "cpu")  # the exporter traces on the CPU
        export_onnx(predictor, out, after_bn=not args.before_bn, verify=not args.no_verify)
    except (CheckpointError, ExportMismatchError) as err:
        return _fail("export", err)
    print(f"ONNX model -> {out}" + ("" if args.no_verify else " (onnxruntime output checked against PyTorch)"))
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder (or its reid_model.safetensors)")
    parser.add_argument("--before-bn", action="store_true", help="use the feature before the BNNeck (f) instead of f_bn")
    if device:
        parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``extract``, ``search``, ``explain`` and ``export`` to the ``dcac`` subcommand parsers."""
    p = subparsers.add_parser("extract", help="features of every image in a folder -> safetensors (names in its metadata)")
    p.add_argument("folder", help="image folder (read recursively, sorted by path)")
    p.add_argument("--out", required=True, help="output .safetensors file")
    _add_model_arguments(p)
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's data.test_batch_size")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding processes")
    add_on_corrupt_argument(p)
    p.set_defaults(func=_cmd_extract)

    p = subparsers.add_parser("search", help="rank a gallery for query images -> results.json + self-contained results.html")
    p.add_argument("queries", nargs="+", help="query image files or folders")
    p.add_argument("--gallery", required=True, help="gallery image folder, or a features file from 'dcac extract'")
    _add_model_arguments(p)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--out", default="search_results", help="output folder (default: search_results)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's data.test_batch_size")
    add_on_corrupt_argument(p)
    p.set_defaults(func=_cmd_search)

    p = subparsers.add_parser("explain", help="Grad-CAM activation maps overlaid on the images -> PNG")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (<stem>_cam.png per image)")
    p.add_argument("--checkpoint", required=True, help="run folder (or its reid_model.safetensors)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--target", choices=("auto", "logit", "norm"), default="auto",
                   help="score to explain: top ID logit (auto, when the run has a classifier) or the feature norm")
    p.add_argument("--alpha", type=unit_interval, default=0.5, help="heatmap opacity, 0 to 1")
    p.set_defaults(func=_cmd_explain)

    p = subparsers.add_parser("export", help="export encoder + BNNeck (normalised features) for deployment")
    _add_model_arguments(p, device=False)
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", help="output file (default: RUN/reid_model.onnx)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs PyTorch check")
    p.set_defaults(func=_cmd_export)
