"""The model bundle: a folder with latentkit.json and one safetensors file per component.

Component folders follow diffusers' layout (`vae/`, `transformer/`, each with config.json and
diffusion_pytorch_model.safetensors), so `AutoencoderKL.from_pretrained(bundle / "vae")` works.
Every file is written to a temp name and renamed; latentkit.json, which holds each file's
sha256, is written last, so an interrupted save is caught at load time, never half-read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from latentkit.config import CodecConfig, DenoiserConfig, TextConfig, from_dict, to_dict
from latentkit.errors import LatentkitError, ModelFileError
from latentkit.models.codec import Codec
from latentkit.models.denoiser import Denoiser

FORMAT = "latentkit-bundle"
FORMAT_VERSION = 1
MANIFEST = "latentkit.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
CODEC_DIR = "vae"
DENOISER_DIR = "transformer"


@dataclass
class Bundle:
    """The loaded parts of a model folder; the text encoder is named, not stored."""

    codec: Codec
    text: TextConfig
    denoiser: Denoiser | None = None
    name: str = "latentkit-model"
    sampling: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write then rename, so a crash never leaves a half-written file under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(bundle: Bundle, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save weights (cast to `dtype` if given, e.g. fp16 for shipping) and the manifest."""
    codec = bundle.codec
    return write_model_folder(
        path,
        head={"name": bundle.name},
        codec=codec,
        codec_fields={
            "latent_shift": codec.latent_shift.tolist(),
            "latent_scale": codec.latent_scale.tolist(),
            "preview_weights": codec.preview_weights.tolist(),
        },
        text=bundle.text,
        denoiser=bundle.denoiser,
        sampling=bundle.sampling,
        training=bundle.training,
        dtype=dtype,
    )


def write_model_folder(
    path: str | Path,
    *,
    head: dict[str, Any],
    codec: nn.Module,
    codec_fields: dict[str, Any],
    text: TextConfig,
    denoiser: nn.Module | None,
    sampling: dict[str, Any],
    training: dict[str, Any],
    dtype: torch.dtype | None,
) -> Path:
    """The one folder layout of image and video models: diffusers subfolders, manifest last.

    `codec` and `denoiser` are our wrappers (`.config`, and the diffusers module in `.vae` and
    `.net`). The manifest is written after every weight file, so a folder whose save was cut
    short has no manifest naming files that are not all there.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **head,
        "codec": {
            "config": to_dict(codec.config),
            **codec_fields,
            **_save_component(codec.vae, root / CODEC_DIR, dtype),
        },
        "text_encoder": {"config": to_dict(text)},
        "denoiser": None,
        "sampling": sampling,
        "training": training,
    }
    if denoiser is not None:
        manifest["denoiser"] = {
            "config": to_dict(denoiser.config),
            **_save_component(denoiser.net, root / DENOISER_DIR, dtype),
        }
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=2).encode())
    return root


def _save_component(module: nn.Module, folder: Path, dtype: torch.dtype | None) -> dict[str, str]:
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    weights = folder / WEIGHTS
    atomic_save_tensors(state, weights, metadata={"format": "pt"})
    config = dict(module.config)  # diffusers' own config.json, for from_pretrained
    config["_class_name"] = type(module).__name__
    atomic_write_bytes(folder / "config.json", json.dumps(config, indent=2, default=list).encode())
    return {"file": f"{folder.name}/{WEIGHTS}", "sha256": sha256_of(weights)}


def read_manifest(path: str | Path) -> dict[str, Any]:
    root = Path(path)
    if not root.exists():
        raise ModelFileError(f"model folder {root} does not exist")
    if not root.is_dir():
        raise ModelFileError(f"model path {root} is not a folder")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{manifest_path} is missing: {root} is not a latentkit model folder")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{manifest_path} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{manifest_path} is not a latentkit manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{manifest_path} has format version {manifest['format_version']}; this latentkit "
            f"reads up to {FORMAT_VERSION}: upgrade latentkit"
        )
    return manifest


def load_bundle(path: str | Path) -> Bundle:
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.get("kind") == "video":
        raise ModelFileError(
            f"{root} is a video model, not an image model: use it with `latentkit video --model "
            f"{root}` (or latentkit.video_pipeline)"
        )
    with reading_model_files(root):
        codec_entry = manifest["codec"]
        codec = Codec(from_dict(CodecConfig, codec_entry["config"]))
        codec.vae.load_state_dict(_load_weights(root, codec_entry, "codec"))
        for name in ("latent_shift", "latent_scale", "preview_weights"):
            getattr(codec, name).copy_(torch.tensor(codec_entry[name]))
        denoiser = None
        if manifest.get("denoiser"):
            entry = manifest["denoiser"]
            denoiser = Denoiser(from_dict(DenoiserConfig, entry["config"]))
            denoiser.net.load_state_dict(_load_weights(root, entry, "denoiser"))
        text = from_dict(TextConfig, manifest["text_encoder"]["config"])
    model_id = model_id_of(manifest, "model")
    return Bundle(
        codec=codec.eval(),
        text=text,
        denoiser=denoiser.eval() if denoiser is not None else None,
        name=manifest.get("name", ""),
        sampling=manifest.get("sampling") or {},
        training=manifest.get("training") or {},
        model_id=model_id,
    )


@contextlib.contextmanager
def reading_model_files(root: Path) -> Iterator[None]:
    """Whatever a malformed manifest or mismatched weights raise becomes one ModelFileError."""
    try:
        yield
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"{root / MANIFEST} is missing or has a malformed entry {e}") from None
    except RuntimeError as e:  # load_state_dict: missing keys or wrong shapes
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:3])
        raise ModelFileError(f"weights in {root} do not match latentkit.json: {detail}") from None
    except LatentkitError as e:
        raise ModelFileError(f"{root / MANIFEST}: {e}") from None


def model_id_of(manifest: dict[str, Any], default_name: str) -> str:
    """name@12 hex digits of the weights' checksums: changes whenever any weight does."""
    parts = [manifest["codec"]["sha256"]]
    if manifest.get("denoiser"):
        parts.append(manifest["denoiser"]["sha256"])
    short = hashlib.sha256("".join(parts).encode()).hexdigest()[:12]
    return f"{manifest.get('name', default_name)}@{short}"


def _load_weights(root: Path, entry: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    path = root / entry["file"]
    if not path.is_file():
        raise ModelFileError(f"{what} weights {path} are missing")
    if sha256_of(path) != entry["sha256"]:
        raise ModelFileError(
            f"{what} weights {path} do not match latentkit.json (checksum differs): the file is "
            "truncated, corrupted or from another model"
        )
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"{what} weights {path} cannot be read: {e}") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
