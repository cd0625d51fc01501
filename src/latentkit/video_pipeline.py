"""The video pipeline: text (and optionally a first frame) to a clip, through video latents.

It reuses the image stack unchanged: the samplers integrate any tensor shape, guidance binds the
prompts, the objective is the same rectified flow. What is video-specific is small: latents have
a time axis, frame counts must suit the causal VAE, and image-to-video pins latent frame 0 to
the encoded image (t = 0 for that frame, velocity 0), the way inpainting keeps known pixels.
Noise comes from one CPU generator per clip, so a clip depends on its seed alone.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from latentkit import __version__
from latentkit.data.video import clips_to_tensor, tensor_to_clips
from latentkit.diffusion.guidance import guided_denoiser
from latentkit.diffusion.samplers import Denoiser, StepInfo, get_sampler
from latentkit.diffusion.schedules import flow_timesteps
from latentkit.errors import (
    InvalidArgument,
    LatentkitError,
    ModelFileError,
    check_positive_int,
)
from latentkit.models.text import PromptEmbeds, load_text_encoder
from latentkit.models.video_codec import valid_frames
from latentkit.models.video_denoiser import pinned_times
from latentkit.pipeline import check_sampling_fields
from latentkit.video_bundle import VideoBundle, load_video_bundle

MODEL_ENV = "LATENTKIT_VIDEO_MODEL"
DEFAULTS = {"steps": 20, "cfg": 3.0, "sampler": "euler", "shift": 1.0, "fps": 8}
MAX_FRAMES = 257


@dataclass(frozen=True)
class VideoRecipe:
    """Everything that decides a clip; written into the file's metadata and a sidecar JSON."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    cfg: float = 3.0
    sampler: str = "euler"
    frames: int = 17
    shift: float = 1.0
    fps: int = 8
    image: str | None = None  # the first frame's file, for image-to-video

    def validate(self) -> VideoRecipe:
        check_sampling_fields(self)
        check_positive_int("frames", self.frames)
        check_positive_int("fps", self.fps)
        if self.frames > MAX_FRAMES:
            raise InvalidArgument(f"frames must be at most {MAX_FRAMES}, got {self.frames}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VideoGeneration:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    latents: Tensor  # [1, C, F, h, w]
    recipe: VideoRecipe
    model_id: str
    fingerprint: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {
            **self.recipe.to_dict(),
            **self.extra,
            "model": self.model_id,
            "fingerprint": self.fingerprint,
        }

    def images(self) -> list[Image.Image]:
        return [Image.fromarray(f) for f in self.frames]


def default_video_model_path() -> Path:
    """$LATENTKIT_VIDEO_MODEL if set, else the video model shipped inside the package."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    shipped = Path(__file__).parent / "weights" / "video"
    if (shipped / "latentkit.json").is_file():
        return shipped
    raise ModelFileError(
        f"no video model given and none shipped: pass --model DIR or set {MODEL_ENV}; train one "
        "with `latentkit train video-vae` then `latentkit train video-denoiser`"
    )


def pin_first_frame(model: Denoiser, first: Tensor) -> Denoiser:
    """Image-to-video: latent frame 0 is the given image's latent, clean (t = 0) at every step.

    The network sees that frame at time 0, as in training, and its velocity there is zeroed,
    so every sampler leaves it exactly where it was put.
    """
    pinned = first.shape[2]

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        x = x.clone()
        x[:, :, :pinned] = first.to(x)
        v = model(x, pinned_times(t, x.shape[2], pinned))
        v = v.clone()
        v[:, :, :pinned] = 0
        return v

    return denoise


class VideoPipeline:
    def __init__(
        self,
        bundle: VideoBundle,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.bundle = bundle
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.dtype = dtype or (torch.float32 if self.device.type == "cpu" else torch.bfloat16)
        self.codec = bundle.codec.to(self.device, self.dtype).eval()
        self.denoiser = (
            bundle.denoiser.to(self.device, self.dtype).eval() if bundle.denoiser else None
        )
        self.text_encoder = load_text_encoder(bundle.text)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> VideoPipeline:
        bundle = load_video_bundle(path if path is not None else default_video_model_path())
        return cls(bundle, device, dtype)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id or self.bundle.name

    @property
    def size(self) -> int:
        return self.codec.config.image_size

    def fingerprint(self) -> dict[str, str]:
        return {
            "latentkit": __version__,
            "torch": torch.__version__,
            "device": self.device.type,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def frames_for(self, frames: int) -> int:
        """Round a frame count up to one the causal VAE takes, saying so when it changes."""
        check_positive_int("frames", frames)
        fixed = valid_frames(frames, self.codec.time_factor)
        if fixed != frames:
            warnings.warn(
                f"frames {frames} rounded up to {fixed}: the video VAE takes 1 + a multiple of "
                f"{self.codec.time_factor} frames",
                stacklevel=2,
            )
        return fixed

    def recipe(self, prompt: str, **kwargs: Any) -> VideoRecipe:
        """A validated recipe with this model's defaults, a fresh seed if none, frames rounded."""
        defaults = {**DEFAULTS, **self.bundle.sampling}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for key in ("steps", "cfg", "sampler", "shift", "fps"):
            kwargs.setdefault(key, defaults[key])
        kwargs.setdefault("seed", secrets.randbelow(2**31))
        kwargs.setdefault("frames", self.codec.config.frames)
        recipe = VideoRecipe(prompt=prompt, **kwargs).validate()
        return replace(recipe, frames=self.frames_for(recipe.frames))

    # -- components --------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str]) -> PromptEmbeds:
        return self.text_encoder.encode(prompts).to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Pixels [B, 3, T, H, W] in [-1, 1] -> normalised latents, on the CPU in fp32."""
        return self.codec.encode(video.to(self.device, self.dtype)).float().cpu()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        if not torch.isfinite(latents).all():
            raise LatentkitError("latents contain NaN or Inf values; nothing to decode")
        return self.codec.decode(latents.to(self.device, self.dtype)).float().cpu()

    def image_latent(self, image: Image.Image | np.ndarray) -> Tensor:
        """The latent of one first frame [1, C, 1, h, w]; the frame must be the model's size."""
        pixels = np.array(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise InvalidArgument(
                f"first frame must be uint8 [H, W, 3], got {pixels.dtype} {list(pixels.shape)}"
            )
        h, w = pixels.shape[:2]
        if (h, w) != (self.size, self.size):
            raise InvalidArgument(
                f"first frame is {w}x{h} but this video model makes {self.size}x{self.size} "
                f"clips; resize the image to {self.size}x{self.size}"
            )
        return self.encode(clips_to_tensor(pixels[None]))

    # -- sampling ----------------------------------------------------------------------------

    def initial_noise(self, recipe: VideoRecipe) -> tuple[Tensor, Callable[[], Tensor]]:
        c = self.codec.config
        shape = (c.latent_channels, c.latent_frames(recipe.frames), c.latent_size, c.latent_size)
        gen = torch.Generator("cpu").manual_seed(recipe.seed)

        def draw() -> Tensor:
            return torch.randn(shape, generator=gen)[None].to(self.device, self.dtype)

        return draw(), draw

    @torch.no_grad()
    def sample(
        self,
        recipe: VideoRecipe,
        x: Tensor,
        noise: Callable[[], Tensor] | None,
        first: Tensor | None = None,
        cond: PromptEmbeds | None = None,
        callback: Callable[[StepInfo], None] | None = None,
    ) -> Tensor:
        """Integrate from noise to video latents; `first` pins latent frame 0 (image-to-video)."""
        if self.denoiser is None:
            raise ModelFileError("this video model has no denoiser (a VAE-only folder)")
        n = x.shape[0]
        cond = cond if cond is not None else self.encode_prompt([recipe.prompt]).repeat(n)
        uncond = None
        if recipe.cfg != 1.0:
            uncond = self.encode_prompt([recipe.negative_prompt]).repeat(n)
        model = guided_denoiser(self.denoiser, cond.to(self.device, self.dtype), uncond, recipe.cfg)
        if first is not None:
            first = first.to(self.device, self.dtype)
            model = pin_first_frame(model, first)
            x = x.clone()
            x[:, :, : first.shape[2]] = first
        ts = flow_timesteps(recipe.steps, shift=recipe.shift).to(self.device)
        out = get_sampler(recipe.sampler)(model, x, ts, noise=noise, callback=callback)
        if first is not None:
            out[:, :, : first.shape[2]] = first
        if not torch.isfinite(out).all():
            raise LatentkitError("sampling diverged (NaN or Inf); try a lower cfg or more steps")
        return out.float().cpu()

    def generate(
        self,
        prompt: str,
        *,
        frames: int | None = None,
        seed: int | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        sampler: str | None = None,
        negative_prompt: str | None = None,
        image: Image.Image | np.ndarray | None = None,
        image_name: str | None = None,
        callback: Callable[[StepInfo], None] | None = None,
    ) -> VideoGeneration:
        """Text to video; with `image`, image to video (the clip starts from that frame)."""
        recipe = self.recipe(
            prompt,
            negative_prompt=negative_prompt or "",
            seed=seed,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            frames=frames,
            image=image_name if image is not None else None,
        )
        first = self.image_latent(image) if image is not None else None
        x, noise = self.initial_noise(recipe)
        latents = self.sample(recipe, x, noise, first=first, callback=callback)
        return self.finish(recipe, latents)

    def finish(self, recipe: VideoRecipe, latents: Tensor, **extra: Any) -> VideoGeneration:
        video = self.decode(latents)[:, :, : recipe.frames]
        return VideoGeneration(
            tensor_to_clips(video)[0], latents, recipe, self.model_id, self.fingerprint(), extra
        )

    def interpolate(
        self, a: Tensor, b: Tensor, count: int, recipe: VideoRecipe
    ) -> list[VideoGeneration]:
        """`count` clips along the slerp path between two video latents (endpoints included).

        Slerp, not lerp: sampled latents are near-Gaussian, and a straight line between two of
        them passes through low-norm latents that decode to washed-out clips.
        """
        from latentkit.ops.interpolate import slerp

        check_positive_int("count", count, minimum=2)
        if a.shape != b.shape:
            raise InvalidArgument(
                f"the two video latents differ in shape: {list(a.shape)} and {list(b.shape)}"
            )
        weights = [i / (count - 1) for i in range(count)]
        return [self.finish(recipe, slerp(a, b, w), weight=w) for w in weights]


def save_clip(frames: np.ndarray, path: str | Path, metadata: dict[str, Any], fps: int) -> Path:
    """Write a clip as MP4 or GIF with the recipe in the file's comment, plus a sidecar JSON.

    The sidecar (`clip.mp4.json`) is there because players and editors drop container
    comments; both are written to temp names and renamed.
    """
    import json

    from latentkit.bundle import atomic_write_bytes
    from latentkit.ops.interpolate import write_animation

    path = Path(path)
    text = json.dumps(metadata, sort_keys=True)
    write_animation([Image.fromarray(f) for f in frames], path, fps=fps, comment=text)
    atomic_write_bytes(path.with_name(path.name + ".json"), json.dumps(metadata, indent=2).encode())
    return path


def load_video_latents(path: str | Path) -> tuple[Tensor, dict[str, Any]]:
    """Video latents [1, C, F, h, w] and their recipe, as `latentkit video --latents` wrote them."""
    import json

    from latentkit.outputs import RECIPE_KEY, read_tensor_file

    latents, meta = read_tensor_file(path, "latents", "video latent file")
    if latents.ndim == 4:
        latents = latents[None]
    if latents.ndim != 5 or not torch.isfinite(latents).all():
        raise InvalidArgument(f"{path} does not hold finite video latents [B, C, F, h, w]")
    return latents.float(), json.loads(meta.get(RECIPE_KEY, "{}"))
