"""A tiny Stable Diffusion model built from configs in the repository, never downloaded.

The embedded default and the tests need a model that loads and renders through the same
diffusers pipelines as a real checkpoint, in well under a second on a laptop CPU. The weights
are random (seeded), so the pictures are noise-like patterns: good for plumbing, not for art.

Every build from the same configs on the same torch version is byte-identical, and a build is
written to a temporary folder next to its destination and renamed into place, so a crash never
leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from farm.errors import InvalidInput

TINY_MODEL_NAME = "tiny-sd"
TINY_SDXL_MODEL_NAME = "tiny-sdxl"

DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"

# Written into every built model folder; says which configs built it.
BUILD_MARKER = "farm_tiny_model.json"

_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def ensure_tiny_model(dest: Path, configs_dir: Path | None = None) -> Path:
    """Build the tiny SD-1.x model into `dest` unless it already holds this very build."""
    return _ensure(Path(dest), _config_folder(configs_dir, "tiny-model"), _build_sd_pipeline)


def build_tiny_sdxl(dest: Path, configs_dir: Path | None = None) -> Path:
    """Build the tiny SDXL model into `dest` unless it already holds this very build."""
    return _ensure(Path(dest), _config_folder(configs_dir, "tiny-model-sdxl"), _build_sdxl_pipeline)


def ensure_random_model(dest: Path, config_folder: Path) -> Path:
    """Build any random-weight model described by a config folder like configs/tiny-model/
    (for example configs/random-sd15/, real SD 1.5 sizes for GPU checks and benchmarks)."""
    config_folder = Path(config_folder)
    if not (config_folder / "build.json").is_file():
        raise InvalidInput("config_folder", f"no build.json in {config_folder}")
    pipeline = _read_json(config_folder / "build.json")["pipeline"]
    builders = {"StableDiffusionPipeline": _build_sd_pipeline, "StableDiffusionXLPipeline": _build_sdxl_pipeline}
    if pipeline not in builders:
        raise InvalidInput("config_folder", f"{config_folder}: pipeline {pipeline!r} is not one of {', '.join(builders)}")
    return _ensure(Path(dest), config_folder, builders[pipeline])


def _config_folder(configs_dir: Path | None, name: str) -> Path:
    folder = Path(configs_dir or DEFAULT_CONFIGS_DIR) / name
    if not (folder / "build.json").is_file():
        raise InvalidInput("configs_dir", f"no tiny model configs in {folder}")
    return folder


def _configs_digest(config_folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(config_folder.glob("*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _marker(config_folder: Path) -> dict[str, str]:
    build = _read_json(config_folder / "build.json")
    return {"name": build["name"], "configs_sha256": _configs_digest(config_folder)}


def _holds_build(dest: Path, marker: dict[str, str]) -> bool:
    try:
        return _read_json(dest / BUILD_MARKER) == marker and (dest / "model_index.json").is_file()
    except (OSError, ValueError):
        return False


def _ensure(dest: Path, config_folder: Path, build) -> Path:
    marker = _marker(config_folder)
    if _holds_build(dest, marker):
        return dest
    if dest.exists() and not (dest / BUILD_MARKER).is_file() and any(dest.iterdir()):
        # Never replace a folder we did not build: it may be someone's real model.
        raise InvalidInput("dest", f"{dest} exists and does not hold a tiny model built by the farm")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    try:
        pipeline = build(config_folder)
        pipeline.save_pretrained(tmp, safe_serialization=True)
        for tokenizer_folder in (tmp / "tokenizer", tmp / "tokenizer_2"):
            if tokenizer_folder.is_dir():
                _write_vocab_files(tokenizer_folder, config_folder)
        _write_json(tmp / BUILD_MARKER, marker)
        _make_world_readable(tmp)
        _move_into_place(tmp, dest, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _make_world_readable(folder: Path) -> None:
    # mkdtemp makes a private folder (0700); a model folder is shared with workers and the web app.
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _move_into_place(tmp: Path, dest: Path, marker: dict[str, str]) -> None:
    stale = None
    if dest.exists():
        # An older build (other configs) or an empty folder: set it aside, then swap.
        stale = Path(tempfile.mkdtemp(prefix=f".{dest.name}.stale-", dir=dest.parent))
        os.rename(dest, stale / "old")
    try:
        os.rename(tmp, dest)
    except OSError:
        # Another process finished the same build first; theirs is as good as ours.
        if not _holds_build(dest, marker):
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------- components


def _build_sd_pipeline(config_folder: Path):
    from diffusers import StableDiffusionPipeline

    seed = _read_json(config_folder / "build.json")["torch_seed"]
    return StableDiffusionPipeline(
        vae=_vae(config_folder, seed),
        text_encoder=_text_encoder(config_folder / "text_encoder.json", seed + 1, with_projection=False),
        tokenizer=_tokenizer(config_folder),
        unet=_unet(config_folder, seed + 2),
        scheduler=_scheduler(config_folder),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl_pipeline(config_folder: Path):
    from diffusers import StableDiffusionXLPipeline

    seed = _read_json(config_folder / "build.json")["torch_seed"]
    return StableDiffusionXLPipeline(
        vae=_vae(config_folder, seed),
        text_encoder=_text_encoder(config_folder / "text_encoder.json", seed + 1, with_projection=False),
        text_encoder_2=_text_encoder(config_folder / "text_encoder_2.json", seed + 3, with_projection=True),
        tokenizer=_tokenizer(config_folder),
        tokenizer_2=_tokenizer(config_folder),
        unet=_unet(config_folder, seed + 2),
        scheduler=_scheduler(config_folder),
        add_watermarker=False,
    )


def _vae(config_folder: Path, seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL.from_config(_read_json(config_folder / "vae.json"))


def _unet(config_folder: Path, seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(_read_json(config_folder / "unet.json"))


def _scheduler(config_folder: Path):
    import diffusers

    config = _read_json(config_folder / "scheduler.json")
    scheduler_class = getattr(diffusers, config["_class_name"])
    return scheduler_class.from_config(config)


def _text_encoder(config_path: Path, seed: int, *, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab = _vocab(config_path.parent)
    config = CLIPTextConfig(
        **_read_json(config_path),
        vocab_size=len(vocab),
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model_class = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_class(config).eval()


def _tokenizer(config_folder: Path):
    from transformers import CLIPTokenizer

    settings = _read_json(config_folder / "tokenizer_settings.json")
    return CLIPTokenizer(
        vocab=_vocab(config_folder),
        merges=[tuple(merge.split(" ")) for merge in settings["merges"]],
        model_max_length=settings["model_max_length"],
    )


def _vocab(config_folder: Path) -> dict[str, int]:
    """CLIP's layout: the 256 byte symbols, the same with "</w>", merge results, specials."""
    settings = _read_json(config_folder / "tokenizer_settings.json")
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split(" ")) for merge in settings["merges"]]
    tokens += list(_SPECIAL_TOKENS)
    if len(set(tokens)) != len(tokens):
        raise InvalidInput("configs_dir", f"tokenizer merges in {config_folder} repeat a token")
    return {token: index for index, token in enumerate(tokens)}


def _write_vocab_files(tokenizer_folder: Path, config_folder: Path) -> None:
    """The classic vocab.json/merges.txt pair, for tools that do not read tokenizer.json."""
    settings = _read_json(config_folder / "tokenizer_settings.json")
    (tokenizer_folder / "vocab.json").write_text(
        json.dumps(_vocab(config_folder), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    merges = "".join(f"{merge}\n" for merge in settings["merges"])
    (tokenizer_folder / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes)}


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
