"""Channel formats (configs/channels.yaml) and the size a model generates each one at.

A format is an exact pixel size (instagram_story is 1080x1920). Models draw well only near the
area they were trained at, and only at sides that are multiples of their latent grid, so a render
for a format is generated at the "nearest size the model supports" and then resized with Lanczos
and centre-cropped to the exact format by the worker (farm.render.resize.cover):

- the area: the model architecture's native area (sd1 512x512, sd2 768x768, sdxl 1024x1024), or
  the job's own width x height when the job or its template sets a size (a size override: an
  SD 1.x fine-tune trained at 768, or a fast test on the tiny model);
- the aspect ratio: the format's, clamped to 1:4 .. 4:1 (models fall apart past that; a 728x90
  leaderboard is generated at 4:1 and cropped);
- the sides: multiples of 8 (sd1, sd2) or 64 (sdxl, whose training buckets are multiples of 64),
  between 64 and 2048, choosing among the multiples around the ideal size the one whose aspect
  ratio is closest to the target, then the one whose area is closest.

Architecture defaults are used, not each model's config, because the size must be known where
the job is submitted (the dashboard may not hold the model files) and must be the same wherever
it is planned. The tiny model is an sd1 model, so it generates at 512x512 unless the job says
otherwise; tests give a small size.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from farm.errors import InvalidInput
from farm.render.params import MAX_SIDE, MIN_SIDE
from farm.render.resize import MAX_FORMAT_SIDE
from farm.settings import CONFIGS_DIR

CHANNELS_FILE = CONFIGS_DIR / "channels.yaml"
# Fits assets.channel_format (String(64)) and reads well in URLs and CSV manifests.
FORMAT_NAME = re.compile(r"[a-z0-9_]{1,64}")

NATIVE_SIDE = {"sd1": 512, "sd2": 768, "sdxl": 1024}
SIDE_MULTIPLE = {"sd1": 8, "sd2": 8, "sdxl": 64}
MIN_ASPECT, MAX_ASPECT = 1 / 4, 4.0


@dataclass(frozen=True)
class ChannelFormat:
    name: str
    label: str
    width: int
    height: int

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_channel_formats(path: Path = CHANNELS_FILE) -> dict[str, ChannelFormat]:
    """The formats in `path`, by name, in file order; InvalidInput naming the file and key if bad.

    Re-read when the file changes, so a running dashboard sees an edited list.
    """
    path = Path(path)
    try:
        modified = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise InvalidInput(str(path), "channel formats file does not exist") from None
    return _load(str(path), modified)


@lru_cache(maxsize=8)
def _load(path: str, _modified: int) -> dict[str, ChannelFormat]:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InvalidInput(path, f"not valid YAML: {error}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise InvalidInput(path, "must be a mapping of format names to {label, width, height}")
    return {str(name): _entry(path, name, entry) for name, entry in loaded.items()}


def _entry(path: str, name: object, entry: object) -> ChannelFormat:
    where = f"{path}: {name}"
    if not isinstance(name, str) or not FORMAT_NAME.fullmatch(name):
        raise InvalidInput(where, "a format name must be 1 to 64 lowercase letters, digits or '_'")
    if not isinstance(entry, dict):
        raise InvalidInput(where, "must be a mapping with label, width and height")
    unknown = sorted(set(entry) - {"label", "width", "height"})
    if unknown:
        raise InvalidInput(f"{where}.{unknown[0]}", "is not a format field (label, width, height)")
    label = entry.get("label")
    if not isinstance(label, str) or not label.strip():
        raise InvalidInput(f"{where}.label", "is required")
    for side in ("width", "height"):
        value = entry.get(side)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FORMAT_SIDE:
            raise InvalidInput(f"{where}.{side}", f"must be a whole number from 1 to {MAX_FORMAT_SIDE}, got {value!r}")
    return ChannelFormat(name=name, label=label.strip(), width=entry["width"], height=entry["height"])


def resolve_formats(names: Iterable[object], field: str = "formats",
                    path: Path = CHANNELS_FILE) -> list[ChannelFormat]:
    """The formats with these names, in the given order; InvalidInput(field) for an unknown or
    repeated name."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise InvalidInput(field, "must be a list of channel format names")
    known = load_channel_formats(path)
    chosen: list[ChannelFormat] = []
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise InvalidInput(field, f"unknown channel format {name!r}; known: {', '.join(known)}")
        if any(f.name == name for f in chosen):
            raise InvalidInput(field, f"'{name}' is listed twice")
        chosen.append(known[name])
    return chosen


def native_size(architecture: str) -> tuple[int, int]:
    side = NATIVE_SIDE.get(architecture)
    if side is None:
        raise InvalidInput("model", f"architecture {architecture!r} does not generate images")
    return side, side


def side_multiple(architecture: str) -> int:
    return SIDE_MULTIPLE.get(architecture, 8)


def generation_size(width: int, height: int, *, base_width: int, base_height: int,
                    multiple: int = 8) -> tuple[int, int]:
    """The size to generate a width x height format at: about base_width x base_height in area,
    the format's aspect ratio clamped to 1:4..4:1, sides multiples of `multiple` within 64..2048."""
    if multiple < 1 or MIN_SIDE % multiple or MAX_SIDE % multiple:
        raise InvalidInput("multiple", f"must divide {MIN_SIDE} and {MAX_SIDE}, got {multiple}")
    aspect = min(max(width / height, MIN_ASPECT), MAX_ASPECT)
    ideal_w = math.sqrt(base_width * base_height * aspect)
    ideal_h = ideal_w / aspect
    # Keep the ideal inside the side limits, keeping its aspect ratio.
    scale = max(1.0, MIN_SIDE / min(ideal_w, ideal_h))
    scale = min(scale, MAX_SIDE / max(ideal_w, ideal_h))
    ideal_w, ideal_h = ideal_w * scale, ideal_h * scale

    def around(value: float) -> set[int]:
        low = math.floor(value / multiple) * multiple
        return {min(max(side, MIN_SIDE), MAX_SIDE) for side in (low, low + multiple)}

    ideal_area = ideal_w * ideal_h
    return min(
        ((w, h) for w in around(ideal_w) for h in around(ideal_h)),
        key=lambda size: (round(abs(math.log(size[0] / size[1] / aspect)), 9),
                          abs(math.log(size[0] * size[1] / ideal_area)), size),
    )
