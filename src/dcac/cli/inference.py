"""``dcac extract | search | explain | export | index | push``: using and sharing a trained run from the command line.

``add_commands(subparsers)`` registers the subcommands on the main ``dcac`` parser; each command returns an
exit code, and ``dcac.cli.main`` reports a user error in one line (exit code 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dcac.cli.arguments import (
    add_checkpoint_argument,
    add_device_argument,
    add_on_corrupt_argument,
    check_output_dir,
    check_output_file,
    unit_interval,
)

if TYPE_CHECKING:
    import torch


def _device(name: str | None) -> str:
    from dcac.cli.arguments import resolve_device  # imports torch: not at the top, so ``dcac --help`` stays light

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


def _cmd_extract(args: argparse.Namespace) -> int:
    from dcac.inference.feature_store import FeatureSet, save_features
    from dcac.inference.image_inputs import find_images

    check_output_file(args.out)
    predictor = _load(args.checkpoint, args.device)
    folder = Path(args.folder)
    files = _readable(find_images(folder), args.on_corrupt)
    after_bn = not args.before_bn
    feats = predictor.extract(
        files, batch_size=args.batch_size, after_bn=after_bn, num_workers=args.num_workers, progress=True
    )
    names = [f.relative_to(folder).as_posix() for f in files]
    save_features(
        args.out,
        FeatureSet(feats, names, folder.resolve(), after_bn, str(args.checkpoint), predictor.weights_sha256),
    )
    print(f"{len(names)} features ({feats.shape[1]}-d, {'f_bn' if after_bn else 'f'}) -> {args.out}")
    return 0


def _gallery_features(args: argparse.Namespace, predictor, after_bn: bool) -> tuple[torch.Tensor, list[str]]:
    """The gallery's features and paths: read from an ``extract`` file (checked to match the model) or extracted."""
    from dcac.inference.feature_store import check_same_weights, load_features
    from dcac.inference.image_inputs import expand_inputs

    gallery_arg = Path(args.gallery)
    if not gallery_arg.is_file():
        gallery_files = _readable(expand_inputs(gallery_arg), args.on_corrupt)
        return predictor.extract(gallery_files, batch_size=args.batch_size, after_bn=after_bn), [
            str(p) for p in gallery_files
        ]
    stored = load_features(gallery_arg)
    if stored.after_bn != after_bn:
        raise ValueError(
            f"{gallery_arg} holds {'f_bn' if stored.after_bn else 'f'} features but the query would use "
            f"{'f_bn' if after_bn else 'f'}: {'drop' if stored.after_bn else 'add'} --before-bn"
        )
    warning = check_same_weights(
        gallery_arg, stored.checkpoint, stored.weights_sha256, str(args.checkpoint), predictor.weights_sha256
    )
    if warning:
        print(f"dcac search: {warning}", file=sys.stderr)
    return stored.features, [str(p) for p in stored.paths()]


def _is_index(path: Path) -> bool:
    from dcac.inference.ann_index import is_index_file

    return path.is_file() and is_index_file(path)


def _search_index(args: argparse.Namespace, predictor, query_feats: torch.Tensor):
    """Top-k from a ``dcac index`` file: (indices, distances, gallery paths)."""
    from dcac.inference.ann_index import GalleryIndex
    from dcac.inference.feature_store import check_same_weights

    if args.rerank:
        raise ValueError(
            f"--rerank needs the gallery's features; {args.gallery} is an index: pass the extract file instead"
        )
    index = GalleryIndex.load(args.gallery)
    warning = check_same_weights(
        args.gallery, "its index", index.weights_sha256, str(args.checkpoint), predictor.weights_sha256
    )
    if warning:
        print(f"dcac search: {warning}", file=sys.stderr)
    indices, distances = index.search(query_feats, args.topk)
    return indices, distances, index.names


def _rerank_params(args: argparse.Namespace, predictor):
    if not args.rerank:
        return None
    ev = predictor.config.eval  # the run's own k1/k2/lambda, as `dcac eval --rerank` uses them
    return (ev.k1, ev.k2, ev.lambda_value)


def _cmd_search(args: argparse.Namespace) -> int:
    from dcac.inference.image_inputs import expand_inputs
    from dcac.inference.ranked_list import ranked_queries_from_paths
    from dcac.inference.ranking import rank
    from dcac.inference.search_page import write_search_results

    check_output_dir(args.out)
    predictor = _load(args.checkpoint, args.device)
    after_bn = not args.before_bn
    indexed = _is_index(Path(args.gallery))
    if not indexed:
        gallery_feats, gallery_paths = _gallery_features(args, predictor, after_bn)
    query_files = _readable(expand_inputs([Path(q) for q in args.queries]), args.on_corrupt)
    query_feats = predictor.extract(query_files, batch_size=args.batch_size, after_bn=after_bn)
    rerank = _rerank_params(args, predictor)
    if indexed:
        indices, distances, gallery_paths = _search_index(args, predictor, query_feats)
    else:
        if query_feats.shape[1] != gallery_feats.shape[1]:
            raise ValueError(
                f"gallery features are {gallery_feats.shape[1]}-d but {args.checkpoint} gives {query_feats.shape[1]}-d features"
            )
        indices, distances = rank(query_feats, gallery_feats, topk=args.topk, rerank=rerank)
    queries = ranked_queries_from_paths([str(q) for q in query_files], gallery_paths, indices, distances)
    json_path, html_path = write_search_results(
        args.out,
        queries,
        checkpoint=str(args.checkpoint),
        after_bn=after_bn,
        rerank=rerank,
        html_queries=args.html_queries,
    )
    print(f"{len(queries)} queries against {len(gallery_paths)} gallery images -> {json_path}, {html_path}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from dcac.inference.gradcam import explain_images
    from dcac.inference.image_inputs import expand_inputs

    check_output_dir(args.out)
    predictor = _load(args.checkpoint, args.device)
    written = explain_images(
        predictor, expand_inputs([Path(p) for p in args.images]), args.out, target=args.target, alpha=args.alpha
    )
    print(f"{len(written)} activation maps -> {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from dcac.hub.download import parse_hub_id
    from dcac.inference.onnx_export import export_onnx
    from dcac.inference.onnx_inputs import InputSpec
    from dcac.storage.run_folder import resolve_run

    spec = InputSpec(args.input, args.layout or ("nhwc" if args.input == "raw" else "nchw"), args.channel_order)
    if not args.out and parse_hub_id(args.checkpoint):
        raise ValueError(
            f"--checkpoint {args.checkpoint} is a Hub id: pass --out (the Hub cache is no place for outputs)"
        )
    out = check_output_file(args.out if args.out else resolve_run(args.checkpoint)[0] / "reid_model.onnx")
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f'dcac export needs {", ".join(missing)}: pip install "dcac[export]"')
    predictor = _load(args.checkpoint, "cpu")  # the exporter traces on the CPU
    export_onnx(
        predictor,
        out,
        after_bn=not args.before_bn,
        verify=not args.no_verify,
        input_spec=spec,
        precision=args.precision,
    )
    print(f"ONNX model -> {out}" + ("" if args.no_verify else " (onnxruntime output checked against PyTorch)"))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from dcac.inference.ann_index import GalleryIndex
    from dcac.inference.feature_store import load_features

    stored = load_features(args.features)
    if args.append:
        index = GalleryIndex.load(args.out)
        if index.weights_sha256 != stored.weights_sha256:
            raise ValueError(
                f"{args.features} comes from other weights than the features already in {args.out}: re-extract it"
            )
    else:
        index = GalleryIndex(
            stored.features.shape[1],
            args.kind,
            hnsw_m=args.hnsw_m,
            ef_search=args.ef_search,
            ivf_lists=args.ivf_lists,
            nprobe=args.nprobe,
            weights_sha256=stored.weights_sha256,
        )
    index.add(stored.features, [str(p) for p in stored.paths()])
    index.save(args.out)
    print(f"{args.out}: {index.kind} index of {len(index)} gallery images ({len(stored.names)} added)")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from dcac.hub.upload import push_run, stage_run
    from dcac.inference.predictor import ReIDPredictor

    ReIDPredictor.from_run(args.run)  # proves the run loads before anything is published
    if args.stage_only:
        folder = stage_run(args.run, args.repo_id, args.stage_only)
        print(f"staged {args.repo_id} (model card {folder / 'README.md'}) in {folder}; nothing uploaded")
        return 0
    url = push_run(args.run, args.repo_id, private=args.private, token=args.token)
    print(f"{args.run} -> https://huggingface.co/{args.repo_id} ({url})")
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--before-bn", action="store_true", help="use the feature before the BNNeck (f) instead of f_bn"
    )
    if device:
        add_device_argument(parser)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``extract``, ``search``, ``explain``, ``export``, ``index`` and ``push`` to the ``dcac`` subcommands."""
    for add in (_add_extract, _add_search, _add_explain, _add_export, _add_sharing_commands):
        add(subparsers)


def _add_extract(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract", help="features of every image in a folder -> safetensors (names in its metadata)"
    )
    p.add_argument("folder", help="image folder (read recursively, sorted by path)")
    p.add_argument("--out", required=True, help="output .safetensors file")
    _add_model_arguments(p)
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's data.test_batch_size")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding processes")
    add_on_corrupt_argument(p)
    p.set_defaults(func=_cmd_extract)


def _add_search(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="rank a gallery for query images -> results.json + self-contained results.html"
    )
    p.add_argument("queries", nargs="+", help="query image files or folders")
    p.add_argument(
        "--gallery",
        required=True,
        help="gallery image folder, a features file from 'dcac extract' or an index from 'dcac index'",
    )
    _add_model_arguments(p)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument(
        "--rerank",
        action="store_true",
        help="k-reciprocal re-ranking with the run's eval.k1/k2/lambda_value, as dcac eval --rerank",
    )
    p.add_argument(
        "--html-queries",
        type=int,
        default=100,
        help="queries shown in results.html (default 100; results.json always holds all of them)",
    )
    p.add_argument("--out", default="search_results", help="output folder (default: search_results)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's data.test_batch_size")
    add_on_corrupt_argument(p)
    p.set_defaults(func=_cmd_search)


def _add_explain(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("explain", help="Grad-CAM activation maps overlaid on the images -> PNG")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (<stem>_cam.png per image)")
    add_checkpoint_argument(p)
    add_device_argument(p)
    p.add_argument(
        "--target",
        choices=("auto", "logit", "norm"),
        default="auto",
        help="score to explain: top ID logit (auto, when the run has a classifier) or the feature norm",
    )
    p.add_argument("--alpha", type=unit_interval, default=0.5, help="heatmap opacity, 0 to 1")
    p.set_defaults(func=_cmd_explain)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export encoder + BNNeck (normalised features) for deployment")
    _add_model_arguments(p, device=False)
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", help="output file (default: RUN/reid_model.onnx)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs PyTorch check")
    p.add_argument(
        "--input",
        choices=("pixel_values", "raw", "imagenet"),
        default="pixel_values",
        help="pixel_values: preprocessed N×3×H×W (default); raw: uint8 crops of any size, resized and "
        "normalised in the graph; imagenet: ImageNet-normalised float crops (BoxMOT-style trackers)",
    )
    p.add_argument("--layout", choices=("nhwc", "nchw"), help="raw input layout (default nhwc)")
    p.add_argument(
        "--channel-order", choices=("rgb", "bgr"), default="rgb", help="raw input channel order (OpenCV: bgr)"
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="fp16 (for GPUs) or int8 (dynamic quantization, for CPUs) variants, checked by cosine to PyTorch",
    )
    p.set_defaults(func=_cmd_export)


def _add_sharing_commands(subparsers: argparse._SubParsersAction) -> None:
    """``index`` (large galleries) and ``push`` (the Hub)."""
    p = subparsers.add_parser(
        "index", help="a persistent gallery index (exact, HNSW or IVF; faiss) from an extract file"
    )
    p.add_argument("features", help="features file from 'dcac extract'")
    p.add_argument("--out", required=True, help="index file (search it with dcac search --gallery FILE)")
    p.add_argument("--kind", choices=("exact", "hnsw", "ivf"), default="exact", help="exact (default), hnsw or ivf")
    p.add_argument("--append", action="store_true", help="add the features to the existing index --out")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth")
    p.add_argument("--ivf-lists", type=int, default=1024, help="IVF cells (trained on the first features added)")
    p.add_argument("--nprobe", type=int, default=16, help="IVF cells searched per query")
    p.set_defaults(func=_cmd_index)

    p = subparsers.add_parser(
        "push", help="upload a run (weights, config, metrics, generated model card) to the Hugging Face Hub"
    )
    p.add_argument("run", help="run folder")
    p.add_argument("repo_id", help="Hub repository, org/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved `hf auth login`)")
    p.add_argument("--stage-only", metavar="DIR", help="write the files and model card to DIR and upload nothing")
    p.set_defaults(func=_cmd_push)
