"""Video model folders: the same layout and guarantees as image bundles (bundle.py).

`vae/` holds AutoencoderKLLTXVideo and `transformer/` LTXVideoTransformer3DModel, each with
diffusers' config.json, so `AutoencoderKLLTXVideo.from_pretrained(folder / "vae")` works;
latentkit.json (kind "video") holds the latent statistics and each file's sha256 and is
written last, so an interrupted save is caught at load time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentkit.bundle import (
    CODEC_DIR,
    DENOISER_DIR,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    _load_weights,
    _save_component,
    atomic_write_bytes,
    read_manifest,
)
from latentkit.config import TextConfig, VideoCodecConfig, VideoDenoiserConfig, from_dict, to_dict
from latentkit.errors import LatentkitError, ModelFileError
from latentkit.models.video_codec import VideoCodec
from latentkit.models.video_denoiser import VideoDenoiser

KIND = "video"


@dataclass
class VideoBundle:
    codec: VideoCodec
    text: TextConfig
    denoiser: VideoDenoiser | None = None
    name: str = "latentkit-video"
    sampling: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""


def save_video_bundle(
    bundle: VideoBundle, path: str | Path, dtype: torch.dtype | None = None
) -> Path:
    """Save weights (cast to `dtype` if given, e.g. fp16 for shipping) and the manifest."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    codec = bundle.codec
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "name": bundle.name,
        "codec": {
            "config": to_dict(codec.config),
            "latent_shift": codec.latent_shift.tolist(),
            "latent_scale": codec.latent_scale.tolist(),
            **_save_component(codec.vae, root / CODEC_DIR, dtype),
        },
        "text_encoder": {"config": to_dict(bundle.text)},
        "denoiser": None,
        "sampling": bundle.sampling,
        "training": bundle.training,
    }
    if bundle.denoiser is not None:
        manifest["denoiser"] = {
            "config": to_dict(bundle.denoiser.config),
            **_save_component(bundle.denoiser.net, root / DENOISER_DIR, dtype),
        }
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=2).encode())
    return root


def load_video_bundle(path: str | Path) -> VideoBundle:
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.get("kind") != KIND:
        raise ModelFileError(
            f"{root} is an image model, not a video model: pass a folder made by "
            "`latentkit train video-vae` / `video-denoiser`"
        )
    try:
        entry = manifest["codec"]
        codec = VideoCodec(from_dict(VideoCodecConfig, entry["config"]))
        codec.vae.load_state_dict(_load_weights(root, entry, "video codec"))
        for name in ("latent_shift", "latent_scale"):
            getattr(codec, name).copy_(torch.tensor(entry[name]))
        denoiser = None
        if manifest.get("denoiser"):
            entry = manifest["denoiser"]
            denoiser = VideoDenoiser(
                from_dict(VideoDenoiserConfig, entry["config"]),
                codec.time_factor,
                codec.factor,
            )
            denoiser.net.load_state_dict(_load_weights(root, entry, "video denoiser"))
        text = from_dict(TextConfig, manifest["text_encoder"]["config"])
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"{root / MANIFEST} is missing or has a malformed entry {e}") from None
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:3])
        raise ModelFileError(f"weights in {root} do not match latentkit.json: {detail}") from None
    except LatentkitError as e:
        raise ModelFileError(f"{root / MANIFEST}: {e}") from None
    parts = [manifest["codec"]["sha256"]] + (
        [manifest["denoiser"]["sha256"]] if manifest.get("denoiser") else []
    )
    short = hashlib.sha256("".join(parts).encode()).hexdigest()[:12]
    return VideoBundle(
        codec=codec.eval(),
        text=text,
        denoiser=denoiser.eval() if denoiser is not None else None,
        name=manifest.get("name", ""),
        sampling=manifest.get("sampling") or {},
        training=manifest.get("training") or {},
        model_id=f"{manifest.get('name', 'video')}@{short}",
    )
