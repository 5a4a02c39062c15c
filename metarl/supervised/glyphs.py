"""A small Omniglot-like dataset rendered from the fonts on the machine: one class per character.

Each sample is the character drawn with a font chosen at random among those that have it, then
randomly scaled, rotated, sheared, shifted and thickened, and box-filtered down to
``image_size`` x ``image_size`` grey levels (strokes bright on a dark background). Characters come
from several scripts and symbol blocks (Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew,
Canadian syllabics, Tifinagh, N'Ko, runes, mathematical and other symbols), so a class split across
them asks, like Omniglot, to recognise new characters from one or a few drawings.

Characters that look alike once size is normalised (Latin "o" / "O", Greek and Cyrillic capitals
that copy Latin ones, ...) are kept only once, as are characters a font only draws as its
"missing glyph" box. The build is deterministic in its seed and the font files, takes a few seconds,
and is cached as an ``.npz`` file whose name encodes both; another machine with other fonts builds
another dataset.

Example:
    >>> data = Glyphs("/tmp/glyphs", num_classes=50, samples_per_class=5)  # doctest: +SKIP
    >>> x, y = data[0]  # x: float [1, 28, 28] in [0, 1]                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image, ImageFilter, ImageFont
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["GLYPH_BLOCKS", "Glyphs", "default_data_root", "find_fonts"]

log = logging.getLogger(__name__)

_VERSION = 1
#: Unicode ranges the characters are drawn from (inclusive), as ``(name, first, last)``.
GLYPH_BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("Latin", 0x0021, 0x007E),
    ("Greek", 0x0391, 0x03C9),
    ("Cyrillic", 0x0400, 0x045F),
    ("Armenian", 0x0531, 0x0586),
    ("Hebrew", 0x05D0, 0x05EA),
    ("NKo", 0x07C0, 0x07EA),
    ("Georgian", 0x10A0, 0x10FA),
    ("Canadian syllabics", 0x1400, 0x167F),
    ("Runic", 0x16A0, 0x16F0),
    ("Letterlike", 0x2100, 0x214F),
    ("Arrows", 0x2190, 0x21FF),
    ("Mathematical", 0x2200, 0x22FF),
    ("Technical", 0x2300, 0x23FF),
    ("Geometric", 0x25A0, 0x25FF),
    ("Symbols", 0x2600, 0x26FF),
    ("Dingbats", 0x2700, 0x27BF),
    ("Tifinagh", 0x2D30, 0x2D7F),
)
_CATEGORIES = ("Lu", "Ll", "Lo", "Nd", "No", "Sm", "So")
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts")
_RENDER = 48  # font size for the master renderings, in pixels
_DUPLICATE = 0.06  # fraction of differing pixels under which two characters count as the same


def default_data_root() -> Path:
    """``~/.cache/metarl/glyphs``, where :class:`Glyphs` caches its builds by default."""
    return Path("~/.cache/metarl/glyphs").expanduser()


def find_fonts(dirs: Sequence[str | os.PathLike[str]] = _FONT_DIRS) -> list[Path]:
    """TrueType / OpenType font files under ``dirs`` (recursively), sorted by path."""
    found: set[Path] = set()
    for d in dirs:
        root = Path(d).expanduser()
        if root.is_dir():
            for pattern in ("*.ttf", "*.otf", "*.TTF", "*.OTF"):
                found.update(root.rglob(pattern))
    return sorted(found)


def _load_fonts(paths: Sequence[Path]) -> tuple[list[Any], list[str]]:
    """Loaded fonts and their identities for the cache key; PIL's own font when none load."""
    fonts, ids = [], []
    # Largest file first: it becomes the reference font for the character pool.
    for path in sorted(paths, key=lambda p: (-p.stat().st_size, str(p))):
        try:
            fonts.append(ImageFont.truetype(str(path), _RENDER))
        except OSError as err:  # unreadable or unsupported file: skip it, say so
            log.warning("skipping font %s: %s", path, err)
            continue
        ids.append(f"{path.name}:{path.stat().st_size}")
    if not fonts:
        fonts.append(ImageFont.load_default(_RENDER))
        ids.append(f"pil-default:{PIL.__version__}")
    return fonts, ids


def _candidates() -> list[tuple[str, str]]:
    out = []
    for block, first, last in GLYPH_BLOCKS:
        for code in range(first, last + 1):
            ch = chr(code)
            if unicodedata.category(ch) in _CATEGORIES:
                out.append((ch, block))
    return out


def _mask(font: Any, ch: str) -> np.ndarray:
    """The glyph's coverage as uint8 ``[h, w]`` cropped to its ink."""
    core = font.getmask(ch)
    width, height = core.size
    if width == 0 or height == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    mask = np.asarray(core, dtype=np.uint8).reshape(height, width)
    ys, xs = np.nonzero(mask > 0)
    if ys.size == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _signature(mask: np.ndarray, size: int = 16) -> np.ndarray:
    """Size-normalised binary thumbnail (aspect kept, centred) for spotting look-alikes."""
    h, w = mask.shape
    side = max(h, w)
    canvas = np.zeros((side, side), dtype=np.uint8)
    canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = mask
    thumb = Image.fromarray(canvas).resize((size, size), Image.Resampling.BOX)
    return np.asarray(thumb) > 96


def _draws(font: Any, ch: str, missing: bytes) -> np.ndarray | None:
    """The glyph mask, or None when the font has no (visible) glyph for ``ch``."""
    mask = _mask(font, ch)
    return mask if min(mask.shape) >= 3 and mask.tobytes() != missing else None


def _missing(font: Any) -> bytes:
    return _mask(font, "\u0378").tobytes()  # an unassigned code point: the "missing glyph" box


def _distinct_characters(font: Any) -> list[tuple[str, str]]:
    """``(character, block)`` for every character ``font`` draws that looks unlike the others."""
    missing = _missing(font)
    kept: list[tuple[str, str]] = []
    candidates = _candidates()
    signatures = np.zeros((len(candidates), 16, 16), dtype=bool)
    for ch, block in candidates:
        mask = _draws(font, ch, missing)
        if mask is None:
            continue
        sig = _signature(mask)
        if kept and (signatures[: len(kept)] != sig).mean(axis=(1, 2)).min() < _DUPLICATE:
            continue
        signatures[len(kept)] = sig
        kept.append((ch, block))
    return kept


def _render(mask: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One randomly transformed drawing of a glyph mask, uint8 ``[image_size, image_size]``."""
    big = 2 * image_size
    src = Image.fromarray(mask)
    if rng.random() < 0.3:  # thicker strokes
        src = src.filter(ImageFilter.MaxFilter(3))
    h, w = mask.shape
    scale = big * rng.uniform(0.55, 0.8) / max(h, w)
    angle = math.radians(rng.uniform(-15.0, 15.0))
    shear = rng.uniform(-0.2, 0.2)
    shift = rng.uniform(-0.06, 0.06, size=2) * big
    # Forward map: output = A @ (source - source_centre) + output_centre + shift, with
    # A = scale * rotation @ shear. PIL wants the inverse map, output -> source.
    cos, sin = math.cos(angle), math.sin(angle)
    a = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    inv = np.linalg.inv(a)
    centre_out = np.array([big / 2, big / 2]) + shift
    centre_src = np.array([w / 2, h / 2])
    offset = centre_src - inv @ centre_out
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    out = src.transform((big, big), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(out.reduce(2), dtype=np.uint8)


class Glyphs(Dataset):
    """Rendered characters, one class per character (see the module docstring).

    Args:
        root: folder for the cached build (default :func:`default_data_root`).
        num_classes: number of characters (classes), chosen at random from the distinct ones.
        samples_per_class: drawings per character.
        image_size: side of the square images.
        seed: seed of the build (choice of characters and all random transforms).
        fonts: font files to use (default :func:`find_fonts`; PIL's own font if there are none).
        transform: applied to each image tensor ``[1, image_size, image_size]`` when indexed.

    Attributes:
        images: uint8 tensor ``[num_classes * samples_per_class, image_size, image_size]``.
        targets: the label (class number) of every image.
        characters: the character of every class.
        blocks: the script or symbol block of every class.
        path: the cache file.

    Raises:
        ValueError: on bad sizes, or if the fonts draw fewer than ``num_classes`` distinct
            characters (the message says how many they do).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        num_classes: int = 400,
        samples_per_class: int = 20,
        image_size: int = 28,
        seed: int = 0,
        fonts: Sequence[str | os.PathLike[str]] | None = None,
        transform: Callable[[Tensor], Any] | None = None,
    ) -> None:
        if min(num_classes, samples_per_class) < 1 or image_size < 8:
            raise ValueError(
                "num_classes and samples_per_class must be >= 1 and image_size >= 8, got "
                f"{num_classes}, {samples_per_class}, {image_size}"
            )
        self.transform = transform
        font_paths = find_fonts() if fonts is None else [Path(f).expanduser() for f in fonts]
        absent = [str(f) for f in font_paths if not f.is_file()]
        if absent:
            raise ValueError(f"font files not found: {absent}; pass existing .ttf/.otf paths")
        loaded, font_ids = _load_fonts(font_paths)
        spec = {
            "version": _VERSION,
            "num_classes": num_classes,
            "samples_per_class": samples_per_class,
            "image_size": image_size,
            "seed": seed,
            "fonts": font_ids,
        }
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        root_dir = default_data_root() if root is None else Path(root).expanduser()
        self.path = root_dir / f"glyphs-{num_classes}x{samples_per_class}-{image_size}px-{key}.npz"
        if not self.path.exists():
            self._build(loaded, spec, root_dir)
        with np.load(self.path) as data:
            images, labels = data["images"], data["labels"]
            self.characters: list[str] = [chr(int(c)) for c in data["codepoints"]]
            self.blocks: list[str] = [str(b) for b in data["blocks"]]
        self.images = torch.from_numpy(images)
        self.targets: list[int] = labels.tolist()

    def _build(self, fonts: list[Any], spec: dict[str, Any], root: Path) -> None:
        rng = np.random.default_rng([spec["seed"], _VERSION])
        # The pool comes from the largest font file (usually the widest coverage); every sample
        # is then drawn with any font that has the character.
        pool = _distinct_characters(fonts[0])
        n, k, size = spec["num_classes"], spec["samples_per_class"], spec["image_size"]
        if n > len(pool):
            raise ValueError(
                f"the fonts found draw only {len(pool)} distinct characters but num_classes={n}; "
                f"ask for at most {len(pool)} classes or install more fonts (e.g. fonts-dejavu, "
                "fonts-noto) and pass them with fonts=[...]"
            )
        chosen = [pool[j] for j in np.sort(rng.choice(len(pool), size=n, replace=False))]
        images = np.empty((n * k, size, size), dtype=np.uint8)
        missing = [_missing(font) for font in fonts]
        for c, (ch, _) in enumerate(chosen):
            drawn = (_draws(font, ch, miss) for font, miss in zip(fonts, missing, strict=True))
            masks = [mask for mask in drawn if mask is not None]
            for s in range(k):
                images[c * k + s] = _render(masks[int(rng.integers(len(masks)))], size, rng)
        root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp.npz")
        np.savez_compressed(
            tmp,
            images=images,
            labels=np.repeat(np.arange(n), k),
            codepoints=np.array([ord(ch) for ch, _ in chosen]),
            blocks=np.array([block for _, block in chosen]),
            spec=np.array(json.dumps(spec)),
        )
        os.replace(tmp, self.path)  # atomic: concurrent builders write the same bytes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x = self.images[index].unsqueeze(0).float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]

    def __repr__(self) -> str:
        return f"Glyphs({len(set(self.targets))} classes, {len(self)} images, {self.path})"
