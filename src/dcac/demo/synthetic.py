"""Synthetic Re-ID domains written in the real on-disk layouts, for tests, demos and smoke training.

Each domain is a small dataset with its own *style* (background kind, colour cast, contrast, outlines,
blur, sensor noise, number of cameras), while *identity* follows rules shared by every domain: a person is
defined by upper/lower clothing colours, a clothing pattern, hair and shoe colours, body width/height and
whether a bag is carried. So a model trained on some domains can tell identities apart in an unseen one,
and the domain gap is a style gap, as in domain-generalizable Re-ID. Each domain has its own people
(identity draws are seeded per domain). Cameras differ by small changes of scale, position, brightness
and viewing side (the bag side flips), and every image adds its own pose and jitter.

A separate "world" of many more domains (:func:`world_styles`, :func:`render_world`) is drawn in memory, with
captions of each person's appearance, to pre-train the demo's miniature diffusion teacher; it can leave out
the look of chosen domains (the demo's unseen target) so the teacher never sees it.

Domains ``synth_a``, ``synth_b``, ``synth_c`` use the Market-1501 layout (with a few pid-0000 gallery
distractors); ``synth_ms`` uses the original MSMT17 list layout (``train/``, ``test/``, ``list_*.txt``).
Everything derives from ``seed`` through per-image random generators, and JPEG encoding is
deterministic, so re-runs are byte-identical.
"""

from __future__ import annotations

import colorsys
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MARKER_FILE = "synthetic.json"  # written in every domain folder; only such folders are ever overwritten


@dataclass(frozen=True)
class DomainStyle:
    """What makes a domain look different (identity rules are not here: they are shared)."""

    layout: str  # "market" or "msmt"
    num_cameras: int
    background: str  # "gradient" | "bands" | "blotches" | "tiles"
    cast: tuple[float, float, float]  # per-channel gain applied to the whole image
    contrast: float
    outline: bool  # draw dark outlines around body parts (a "cartoon" rendering)
    blur: float  # Gaussian blur radius in pixels
    noise_std: float  # sensor noise, in [0, 1] intensity units
    index: int  # separates the domains' random streams


DOMAIN_STYLES: dict[str, DomainStyle] = {
    "synth_a": DomainStyle("market", 4, "gradient", (1.0, 1.0, 1.0), 1.0, False, 0.0, 0.01, 1),
    "synth_b": DomainStyle("market", 6, "bands", (1.15, 1.0, 0.8), 1.1, True, 0.0, 0.02, 2),
    "synth_c": DomainStyle("market", 3, "blotches", (0.8, 0.95, 1.2), 0.8, False, 0.8, 0.015, 3),
    "synth_ms": DomainStyle("msmt", 8, "tiles", (0.9, 1.1, 0.9), 0.9, False, 0.4, 0.03, 4),
}


@dataclass(frozen=True)
class Identity:
    """The appearance rules of one person (shared meaning across domains)."""

    upper: tuple[float, float, float]
    lower: tuple[float, float, float]
    pattern: int  # 0 solid, 1 horizontal stripes, 2 vertical stripes, 3 two-tone split
    pattern_colour: tuple[float, float, float]
    hair: tuple[float, float, float]
    shoes: tuple[float, float, float]
    skin: tuple[float, float, float]
    width: float
    height: float
    bag: tuple[float, float, float] | None


@dataclass(frozen=True)
class CameraView:
    scale: float
    shift: float  # horizontal offset, fraction of the image width
    brightness: float
    mirrored: bool  # seen from the other side: the bag changes side
    tint: tuple[float, float, float]


def _colour(
    rng: np.random.Generator, saturation: tuple[float, float] = (0.45, 1.0), value: tuple[float, float] = (0.3, 0.95)
) -> tuple[float, float, float]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(float(c) for c in rgb)  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> Identity:
    skin_tone = rng.uniform(0.35, 0.95)
    return Identity(
        upper=_colour(rng),
        lower=_colour(rng),
        pattern=int(rng.integers(4)),
        pattern_colour=_colour(rng),
        hair=_colour(rng, (0.0, 0.6), (0.05, 0.6)),
        shoes=_colour(rng, (0.0, 0.5), (0.05, 0.9)),
        skin=(skin_tone, skin_tone * 0.8, skin_tone * 0.65),
        width=float(rng.uniform(0.8, 1.2)),
        height=float(rng.uniform(0.86, 1.0)),
        bag=_colour(rng) if rng.uniform() < 0.4 else None,
    )


def sample_camera(rng: np.random.Generator) -> CameraView:
    return CameraView(
        scale=float(rng.uniform(0.88, 1.02)),
        shift=float(rng.uniform(-0.06, 0.06)),
        brightness=float(rng.uniform(0.8, 1.15)),
        mirrored=bool(rng.uniform() < 0.5),
        tint=tuple(float(t) for t in rng.uniform(0.9, 1.1, size=3)),
    )  # type: ignore[arg-type]


def _background(
    style: DomainStyle, camera: CameraView, rng: np.random.Generator, height: int, width: int
) -> np.ndarray:
    """An HxWx3 float image in [0, 1]; the kind is the domain's, the colours vary per camera and image."""
    ys = np.linspace(0.0, 1.0, height)[:, None, None]
    xs = np.linspace(0.0, 1.0, width)[None, :, None]
    top, bottom = np.array(_colour(rng, (0.0, 0.4))), np.array(_colour(rng, (0.0, 0.4)))
    if style.background == "gradient":
        image = top * (1 - ys) + bottom * ys + 0 * xs
    elif style.background == "bands":
        period = rng.uniform(6, 14)
        image = np.where(np.sin(2 * np.pi * ys * height / period) > 0, top, bottom) + 0 * xs
    elif style.background == "blotches":
        coarse = rng.uniform(0, 1, size=(4, 2, 3))
        image = (
            np.asarray(
                Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
                dtype=np.float64,
            )
            / 255.0
        )
    elif style.background == "tiles":
        tile = int(rng.integers(8, 16))
        rows, cols = np.arange(height)[:, None] // tile, np.arange(width)[None, :] // tile
        image = np.where(((rows + cols) % 2 == 0)[..., None], top, bottom)
    else:
        raise ValueError(f"unknown background kind {style.background!r}")
    return np.clip(image * np.array(camera.tint), 0.0, 1.0)


def _to_rgb255(colour: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(round(255 * min(max(c, 0.0), 1.0))) for c in colour)  # type: ignore[return-value]


def _draw_pattern(draw: ImageDraw.ImageDraw, identity: Identity, x0: float, y0: float, x1: float, y1: float) -> None:
    """The shirt's pattern inside the torso box: horizontal stripes, vertical stripes or a two-tone top."""
    pattern = _to_rgb255(identity.pattern_colour)
    if identity.pattern == 1:
        for k in range(1, 6, 2):
            draw.rectangle((x0, y0 + k * (y1 - y0) / 6, x1, y0 + (k + 1) * (y1 - y0) / 6), fill=pattern)
    elif identity.pattern == 2:
        for k in range(1, 5, 2):
            draw.rectangle((x0 + k * (x1 - x0) / 5, y0, x0 + (k + 1) * (x1 - x0) / 5, y1), fill=pattern)
    elif identity.pattern == 3:
        draw.rectangle((x0, y0, x1, (y0 + y1) / 2), fill=pattern)


def _draw_head(draw: ImageDraw.ImageDraw, identity: Identity, cx: float, top: float, head_r: float, outline) -> None:
    draw.ellipse(
        (cx - head_r * 0.85, top, cx + head_r * 0.85, top + 2 * head_r), fill=_to_rgb255(identity.skin), outline=outline
    )
    draw.chord(
        (cx - head_r * 0.9, top - 1, cx + head_r * 0.9, top + 1.3 * head_r), 180, 360, fill=_to_rgb255(identity.hair)
    )


def render_person(
    identity: Identity,
    style: DomainStyle,
    camera: CameraView,
    rng: np.random.Generator,
    height: int = 128,
    width: int = 64,
) -> Image.Image:
    """Draw one image of ``identity`` seen by ``camera`` in the domain ``style``."""
    canvas = Image.fromarray((_background(style, camera, rng, height, width) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    outline = (20, 20, 20) if style.outline else None
    scale = camera.scale * identity.height * rng.uniform(0.96, 1.04)
    body_h = 0.9 * height * scale
    top = height - body_h - rng.uniform(0.0, 0.05) * height
    cx = width * (0.5 + camera.shift + rng.uniform(-0.03, 0.03))
    torso_w = 0.24 * body_h * identity.width
    stride = rng.uniform(0.0, 0.07) * body_h

    def y(fraction: float) -> float:
        return top + fraction * body_h

    def box(x0: float, y0: float, x1: float, y1: float, colour: Sequence[float]) -> None:
        draw.rectangle((x0, y0, x1, y1), fill=_to_rgb255(colour), outline=outline)

    leg_w = 0.42 * torso_w
    for side in (-1, 1):  # legs and shoes, apart by the walking stride
        x_leg = cx + side * (0.25 * torso_w + 0.5 * stride)
        box(x_leg - leg_w / 2, y(0.52), x_leg + leg_w / 2, y(0.95), identity.lower)
        box(x_leg - leg_w / 2, y(0.95), x_leg + leg_w / 2 + side * 2, y(1.0), identity.shoes)
    arm_w = 0.2 * torso_w
    for side in (-1, 1):
        x_arm = cx + side * (torso_w / 2 + arm_w / 2)
        box(x_arm - arm_w / 2, y(0.18), x_arm + arm_w / 2, y(0.5), identity.upper)
    x0, x1, y0, y1 = cx - torso_w / 2, cx + torso_w / 2, y(0.16), y(0.54)
    box(x0, y0, x1, y1, identity.upper)
    _draw_pattern(draw, identity, x0, y0, x1, y1)
    _draw_head(draw, identity, cx, y(0.0), 0.075 * body_h, outline)
    if identity.bag is not None:
        side = -1 if camera.mirrored else 1
        x_bag = cx + side * (torso_w / 2 + arm_w + 0.08 * body_h)
        box(x_bag - 0.08 * body_h, y(0.38), x_bag + 0.08 * body_h, y(0.56), identity.bag)
    if style.blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(style.blur))
    pixels = np.asarray(canvas, dtype=np.float64) / 255.0
    brightness = camera.brightness * rng.uniform(0.95, 1.05)
    pixels = (pixels - 0.5) * style.contrast + 0.5
    pixels = pixels * np.array(style.cast) * brightness + rng.normal(0.0, style.noise_std, size=pixels.shape)
    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8))


@dataclass(frozen=True)
class _Shot:
    """One image to write: who, which camera, which take, and where it goes."""

    split: str  # "train" | "val" | "query" | "gallery"
    pid: int
    camid: int
    take: int


def _shots(
    style: DomainStyle, num_train_ids: int, num_test_ids: int, images_per_id: int, num_distractors: int
) -> list[_Shot]:
    shots = []
    for pid in range(1, num_train_ids + num_test_ids + 1):
        is_train = pid <= num_train_ids
        for take in range(images_per_id):
            camid = (pid + take) % style.num_cameras  # consecutive takes come from different cameras
            if is_train:
                # MSMT17 keeps some train-identity images in list_val; one per fourth id, as a small analogue
                split = "val" if style.layout == "msmt" and pid % 4 == 0 and take == images_per_id - 1 else "train"
            else:
                split = "query" if take == 0 else "gallery"
            shots.append(_Shot(split, pid, camid, take))
    if style.layout == "market":
        shots += [_Shot("gallery", 0, k % style.num_cameras, k) for k in range(num_distractors)]
    return shots


def _image_rng(seed: int, style: DomainStyle, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, style.index, *keys])


def _market_name(shot: _Shot) -> str:
    folder = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}[shot.split]
    return f"{folder}/{shot.pid:04d}_c{shot.camid + 1}s1_{shot.take * 25:06d}_00.jpg"


def _msmt_name(shot: _Shot, label: int) -> str:
    folder = "train" if shot.split in ("train", "val") else "test"
    return f"{folder}/{label:04d}/{label:04d}_{shot.take:03d}_{shot.camid + 1:02d}_0303morning_{shot.take:04d}_0.jpg"


def write_domain(
    out_dir: Path,
    name: str,
    *,
    seed: int,
    num_train_ids: int,
    num_test_ids: int,
    images_per_id: int,
    num_distractors: int,
    height: int,
    width: int,
) -> Path:
    """Write one domain to ``out_dir/name`` and return that folder."""
    style = DOMAIN_STYLES[name]
    domain_dir = out_dir / name
    cameras = [sample_camera(_image_rng(seed, style, 0, c)) for c in range(style.num_cameras)]
    lists: dict[str, list[str]] = {"train": [], "val": [], "query": [], "gallery": []}
    identities: dict[int, Identity] = {}
    for shot in _shots(style, num_train_ids, num_test_ids, images_per_id, num_distractors):
        rng = _image_rng(seed, style, 1, shot.pid, shot.camid, shot.take)
        if shot.pid == 0:  # a distractor is a one-off person
            identity = sample_identity(_image_rng(seed, style, 2, shot.take))
        else:
            identity = identities.setdefault(shot.pid, sample_identity(_image_rng(seed, style, 3, shot.pid)))
        image = render_person(identity, style, cameras[shot.camid], rng, height, width)
        if style.layout == "market":
            relative = _market_name(shot)
        else:
            # MSMT17 lists label train ids 0.. and, separately, test ids 0..
            label = shot.pid - 1 if shot.pid <= num_train_ids else shot.pid - 1 - num_train_ids
            relative = _msmt_name(shot, label)
            lists[shot.split].append(f"{relative.split('/', 1)[1]} {label}")
        path = domain_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG", quality=92)
    for split, lines in lists.items():
        if style.layout == "msmt":
            (domain_dir / f"list_{split}.txt").write_text("".join(line + "\n" for line in lines))
    metadata = {
        "name": name,
        "seed": seed,
        "num_train_ids": num_train_ids,
        "num_test_ids": num_test_ids,
        "images_per_id": images_per_id,
        "num_distractors": num_distractors,
        "height": height,
        "width": width,
        "style": asdict(style),
    }
    (domain_dir / MARKER_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return domain_dir


def write_synthetic(
    out_dir: str | Path,
    *,
    seed: int = 0,
    domains: Iterable[str] | None = None,
    num_train_ids: int = 24,
    num_test_ids: int = 16,
    images_per_id: int = 6,
    num_distractors: int = 8,
    height: int = 128,
    width: int = 64,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the synthetic domains under ``out_dir`` (one folder per domain, named after it).

    Returns ``{domain name: folder}``; load them with ``get_dataset(name, root=out_dir)``. Existing domain
    folders are replaced only with ``overwrite=True`` and only if they were written by this function.
    """
    names = list(DOMAIN_STYLES) if domains is None else list(domains)
    unknown = [n for n in names if n not in DOMAIN_STYLES]
    if unknown:
        raise ValueError(f"unknown synthetic domain(s) {unknown}; available: {list(DOMAIN_STYLES)}")
    if num_train_ids < 1 or num_test_ids < 1 or images_per_id < 2 or num_distractors < 0:
        raise ValueError(
            "need num_train_ids >= 1, num_test_ids >= 1, images_per_id >= 2 (a query and a "
            "gallery image per test id) and num_distractors >= 0"
        )
    out_dir = Path(out_dir)
    for name in names:
        domain_dir = out_dir / name
        if domain_dir.exists():
            if not overwrite:
                raise FileExistsError(f"{domain_dir} already exists; pass overwrite=True to replace it")
            if not (domain_dir / MARKER_FILE).is_file():
                raise FileExistsError(
                    f"refusing to replace {domain_dir}: it has no {MARKER_FILE}, so it was not "
                    "written by write_synthetic"
                )
            shutil.rmtree(domain_dir)
    return {
        name: write_domain(
            out_dir,
            name,
            seed=seed,
            num_train_ids=num_train_ids,
            num_test_ids=num_test_ids,
            images_per_id=images_per_id,
            num_distractors=num_distractors,
            height=height,
            width=width,
        )
        for name in names
    }


#: Background kinds a domain may draw; a world left out of a domain never uses that domain's kind.
BACKGROUND_KINDS = ("gradient", "bands", "blotches", "tiles")


def world_styles(num_domains: int, *, seed: int, exclude: Iterable[str] = ()) -> list[DomainStyle]:
    """``num_domains`` random market-layout styles; none shares its background kind with an ``exclude`` domain.

    The excluded domains' exact styles can therefore never be drawn: the world does not contain them.
    """
    banned = {DOMAIN_STYLES[name].background for name in exclude}
    kinds = [k for k in BACKGROUND_KINDS if k not in banned]
    if num_domains < 1 or not kinds:
        raise ValueError(f"need num_domains >= 1 and a background kind left after excluding {sorted(banned)}")
    rng = np.random.default_rng([seed, 7919])
    # Style indices start past the named domains' so the world's random streams are its own.
    return [
        DomainStyle(
            "market",
            int(rng.integers(3, 9)),
            kinds[int(rng.integers(len(kinds)))],
            tuple(float(c) for c in rng.uniform(0.75, 1.25, size=3)),  # type: ignore[arg-type]
            float(rng.uniform(0.7, 1.2)),
            bool(rng.uniform() < 0.3),
            float(rng.choice([0.0, 0.4, 0.8])),
            float(rng.uniform(0.0, 0.04)),
            100 + k,
        )
        for k in range(num_domains)
    ]


def identity_caption(identity: Identity) -> np.ndarray:
    """A "caption" of a person as numbers: clothing, hair, shoe, skin and bag colours, pattern, build (26 values)."""
    pattern = np.eye(4)[identity.pattern]
    bag = (1.0, *identity.bag) if identity.bag is not None else (0.0, 0.0, 0.0, 0.0)
    return np.concatenate(
        [
            identity.upper,
            identity.lower,
            pattern,
            identity.pattern_colour,
            identity.hair,
            identity.shoes,
            identity.skin[:1],
            (identity.width, identity.height),
            bag,
        ]
    ).astype(np.float32)


#: How many numbers :func:`scene_caption` gives: background kind, a 4 x 2 grid of background colours, rendering, camera.
SCENE_CAPTION_SIZE = len(BACKGROUND_KINDS) + 24 + 3 + 3


def scene_caption(style: DomainStyle, camera: CameraView, background: np.ndarray) -> np.ndarray:
    """A "caption" of an image's scene as numbers (``SCENE_CAPTION_SIZE`` values), as an SD caption states the
    setting besides the subject: the background kind, the background's mean colours over a 4 x 2 grid as the
    domain's contrast, colour cast and the camera's brightness show them, the rendering (outlines, blur, sensor
    noise), and where the camera puts the person (scale, shift, side). ``background`` is the HxWx3 image in [0, 1]
    that :func:`render_person` draws first."""
    height, width = background.shape[:2]
    grid = background[: height // 4 * 4, : width // 2 * 2].reshape(4, height // 4, 2, width // 2, 3).mean(axis=(1, 3))
    shown = ((grid - 0.5) * style.contrast + 0.5) * np.array(style.cast) * camera.brightness
    rendering = (float(style.outline), style.blur, 10 * style.noise_std)
    placement = (camera.scale, 10 * camera.shift, float(camera.mirrored))
    kind = np.eye(len(BACKGROUND_KINDS))[BACKGROUND_KINDS.index(style.background)]
    return np.concatenate([kind, np.clip(shown, 0.0, 1.0).ravel(), rendering, placement]).astype(np.float32)


def render_world(
    styles: Sequence[DomainStyle],
    *,
    seed: int,
    ids_per_domain: int,
    images_per_id: int,
    height: int = 128,
    width: int = 64,
) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    """Images of ``ids_per_domain`` people per world domain, from that domain's cameras, with each image's
    person caption (:func:`identity_caption`) and scene caption (:func:`scene_caption`)."""
    images, identities, scenes = [], [], []
    for style in styles:
        cameras = [sample_camera(_image_rng(seed, style, 0, c)) for c in range(style.num_cameras)]
        for pid in range(ids_per_domain):
            identity = sample_identity(_image_rng(seed, style, 3, pid))
            for take in range(images_per_id):
                camera = cameras[(pid + take) % style.num_cameras]
                images.append(
                    render_person(identity, style, camera, _image_rng(seed, style, 1, pid, take), height, width)
                )
                # render_person draws the background first from the image's stream: the same stream redraws it
                background = _background(style, camera, _image_rng(seed, style, 1, pid, take), height, width)
                identities.append(identity_caption(identity))
                scenes.append(scene_caption(style, camera, background))
    return images, np.stack(identities), np.stack(scenes)
