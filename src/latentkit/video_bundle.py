"""Video model folders: the same layout and guarantees as image bundles (bundle.py).

`vae/` holds AutoencoderKLLTXVideo and `transformer/` LTXVideoTransformer3DModel, each with
diffusers' config.json, so `AutoencoderKLLTXVideo.from_pretrained(folder / "vae")` works;
latentkit.json (kind "video") holds the latent statistics and each file's sha256 and is
written last, so an interrupted save is caught at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentkit.bundle import (
    _load_weights,
    model_id_of,
    read_manifest,
    reading_model_files,
    write_model_folder,
)
from latentkit.config import TextConfig, VideoCodecConfig, VideoDenoiserConfig, from_dict
from latentkit.errors import ModelFileError
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
    codec = bundle.codec
    return write_model_folder(
        path,
        head={"kind": KIND, "name": bundle.name},
        codec=codec,
        codec_fields={
            "latent_shift": codec.latent_shift.tolist(),
            "latent_scale": codec.latent_scale.tolist(),
        },
        text=bundle.text,
        denoiser=bundle.denoiser,
        sampling=bundle.sampling,
        training=bundle.training,
        dtype=dtype,
    )


def load_video_bundle(path: str | Path) -> VideoBundle:
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.get("kind") != KIND:
        raise ModelFileError(
            f"{root} is an image model, not a video model: pass a folder made by "
            "`latentkit train video-vae` / `video-denoiser`"
        )
    with reading_model_files(root):
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
    return VideoBundle(
        codec=codec.eval(),
        text=text,
        denoiser=denoiser.eval() if denoiser is not None else None,
        name=manifest.get("name", ""),
        sampling=manifest.get("sampling") or {},
        training=manifest.get("training") or {},
        model_id=model_id_of(manifest, "video"),
    )
