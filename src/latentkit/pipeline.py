"""The pipeline: holds a model's components and turns a recipe into images or clips.

One class for every family and for video: the codec, text encoder and network come from
`latentkit.families` behind the protocols of models/components.py, so nothing here knows a
UNet from a transformer. Latents stay fp32 wherever they live; only the networks run in bf16 on
a GPU. Noise is drawn on the CPU from one generator per image (image i of a batch uses seed + i),
so an image depends on its seed alone: not on batch size, batch position or device.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from latentkit.diffusion.guidance import guided
from latentkit.diffusion.samplers import StepInfo, get_sampler
from latentkit.errors import (
    MAX_SEED,
    InvalidArgument,
    LatentkitError,
    ModelFileError,
    check_finite,
    check_positive_int,
    check_seed,
)
from latentkit.families import load_components
from latentkit.families.base import Components, Defaults
from latentkit.models.components import PromptEmbeds, Velocity
from latentkit.models.text import check_prompt
from latentkit.version import __version__

MAX_BATCH = 4096
MAX_FRAMES = 257
MAX_SIDE_FACTOR = 16  # a side may be up to 16x the native side (512 px for a 32 px model)
OPTIONAL_FIELDS = ("frames", "fps", "guidance", "true_cfg")  # left out of outputs when unset


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a generation; written into outputs so it can be replayed.
    `frames` and `fps` are set for video models only."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    cfg: float = 4.0
    sampler: str = "euler"
    n: int = 1
    height: int = 64
    width: int = 64
    shift: float = 1.0
    frames: int | None = None
    fps: int | None = None
    guidance: float | None = None  # a guidance-distilled network's own input (FLUX.1-dev)
    true_cfg: bool | None = None  # classifier-free guidance on a guidance-distilled network

    def validate(self) -> Recipe:
        check_prompt(self.prompt)
        check_prompt(self.negative_prompt)
        check_seed(self.seed)
        check_positive_int("steps", self.steps)
        check_finite("cfg", self.cfg, low=0.0)
        check_finite("shift", self.shift, low=1e-3)
        get_sampler(self.sampler)
        check_positive_int("n", self.n)
        if self.n > MAX_BATCH:
            raise InvalidArgument(f"n must be at most {MAX_BATCH}, got {self.n}")
        if self.seed + self.n - 1 > MAX_SEED:
            raise InvalidArgument(f"seed + n - 1 must be at most 2^63-1, got seed {self.seed}")
        if self.frames is not None:
            check_positive_int("frames", self.frames)
            if self.frames > MAX_FRAMES:
                raise InvalidArgument(f"frames must be at most {MAX_FRAMES}, got {self.frames}")
        if self.fps is not None:
            check_positive_int("fps", self.fps)
        if self.guidance is not None:
            check_finite("guidance", self.guidance, low=0.0)
        return self

    @property
    def is_video(self) -> bool:
        return self.frames is not None

    def for_image(self, i: int) -> Recipe:
        """The one-image recipe that regenerates image i of this batch."""
        return replace(self, seed=self.seed + i, n=1)

    def to_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        return {k: v for k, v in fields.items() if not (k in OPTIONAL_FIELDS and v is None)}


@dataclass(frozen=True)
class SamplingOptions:
    """What a request says about sampling, whichever interface it came through (CLI flags, the
    studio's JSON, AUTOMATIC1111's or OpenAI's fields): unset (None) means the model's default.
    `args()` are the keyword arguments `Pipeline.recipe`, `generate` and every op take."""

    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    n: int = 1
    guidance: float | None = None
    true_cfg: bool | None = None

    def args(self, *, single: bool = False) -> dict[str, Any]:
        """Set options only; `single` leaves out n, for ops that make one result (a morph)."""
        chosen = {k: v for k, v in asdict(self).items() if v is not None}
        if single:
            chosen.pop("n")
        return chosen


@dataclass
class Progress:
    """What a step callback receives; the preview is computed only if someone looks at it."""

    step: int
    total: int
    t: float
    latents: Tensor
    denoised: Tensor
    _pipe: Pipeline = field(repr=False)

    @cached_property
    def preview(self) -> list[Image.Image]:
        return self._pipe.preview(self.denoised)


@dataclass
class Generation:
    """Images (image models) or clips (video models: uint8 [T, H, W, 3] each) and their recipe."""

    images: list[Image.Image]
    latents: Tensor
    recipe: Recipe
    model_id: str
    fingerprint: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)  # what an op adds: strength, source...
    clips: list[np.ndarray] = field(default_factory=list)

    def recipe_of(self, i: int) -> dict[str, Any]:
        """Metadata for output i: its own recipe plus the model and software that made it."""
        return {
            **self.recipe.for_image(i).to_dict(),
            **self.extra,
            "model": self.model_id,
            "fingerprint": self.fingerprint,
        }


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on a CPU; bf16 for the networks on a GPU (latents stay fp32 everywhere)."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def _move(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    return module.to(device, dtype).eval() if isinstance(module, torch.nn.Module) else module


class Pipeline:
    def __init__(
        self,
        components: Components,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        offload: bool = False,
    ) -> None:
        self.components = components
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.text_encoder = components.text
        if offload:
            self.codec, self.network = self._offload()
        else:
            self.codec = _move(components.codec, self.device, self.dtype)
            self.network = _move(components.network, self.device, self.dtype)
            if hasattr(self.text_encoder, "to"):
                self.text_encoder.to(self.device, self.dtype)
        self.loras: dict[str, float] = {}  # adapter name -> weight, in load order
        self.token_files: list[str] = []

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        kind: str = "image",
        prediction: str | None = None,
        offload: bool = False,
        vae: str | Path | None = None,
        base: str | Path | None = None,
        fast: bool = False,
    ) -> Pipeline:
        """Any model latentkit knows: our folders (image or video), diffusers folders and single
        files of the supported families. No path: the shipped model of `kind` ("image" or
        "video"). `offload` keeps the weights in CPU memory and moves each part to the GPU
        while it runs, for models larger than the GPU's memory; `vae` swaps in a standalone VAE
        file (e.g. the fixed fp16 SDXL VAE); `base` is a diffusers folder giving a single file
        the parts it lacks (an SD3.5 file's text encoders and VAE, SD3's T5 tokenizer); `fast`
        samples with the few-step student distilled into a latentkit model (`latentkit distill
        --attach`), at its own defaults."""
        device = torch.device(device) if device is not None else default_device()
        if offload and device.type != "cuda":
            raise InvalidArgument(
                "--offload keeps weights in CPU memory and moves each part to the GPU while it "
                f"runs; it needs a GPU, and this pipeline runs on {device.type}"
            )
        where = torch.device("cpu") if offload else device
        dtype = dtype or default_dtype(device)
        parts = load_components(path, kind=kind, prediction=prediction, device=where, dtype=dtype,
                                base=base, fast=fast)  # fmt: skip
        if vae is not None:
            from latentkit.families.component_files import load_vae_file

            parts.codec.vae = load_vae_file(Path(vae), parts.codec.vae, dtype)
            parts.model_id += f"+vae:{Path(vae).stem}"
        return cls(parts, device, dtype, offload=offload)

    def _offload(self) -> tuple[Any, Any]:
        """Model-level CPU offload with accelerate's hooks (what diffusers'
        enable_model_cpu_offload does): each module moves to the GPU when called and back to
        the CPU when the next one starts. Returns the codec and network, still on the CPU."""
        from accelerate import cpu_offload_with_hook

        network = self.components.network
        inner = getattr(network, "unet", None) or getattr(network, "transformer", None)
        if inner is None:
            raise InvalidArgument(
                f"--offload is for models larger than a GPU (Stable Diffusion, SD3, FLUX); "
                f"this {self.components.title} fits, run it without --offload"
            )
        codec = _move(self.components.codec, torch.device("cpu"), self.dtype)
        network = _move(network, torch.device("cpu"), self.dtype)
        hook = None
        for module in [*self.text_encoder.encoders, inner, codec.vae]:
            module.to(dtype=self.dtype)
            _, hook = cpu_offload_with_hook(module, self.device, prev_module_hook=hook)
        return codec, network

    # -- what the model is -------------------------------------------------------------------

    @property
    def family(self) -> str:
        return self.components.family

    @property
    def is_video(self) -> bool:
        return self.components.is_video

    @property
    def defaults(self) -> Defaults:
        return self.components.defaults

    @property
    def model_id(self) -> str:
        """The base model's id, plus each LoRA and token file in use, so recipes replay exactly."""
        extras = [f"lora:{n}*{w:g}" for n, w in self.loras.items()] + [
            f"tokens:{t}" for t in self.token_files
        ]
        return "+".join([self.components.model_id, *extras])

    @property
    def native_size(self) -> tuple[int, int]:
        return self.codec.native_size

    @property
    def image_size(self) -> int:
        """The side of the model's native (square) images."""
        return self.codec.native_size[0]

    @property
    def factor(self) -> int:
        return self.codec.spatial_factor

    @property
    def latent_cell(self) -> int:
        """Image sides must be multiples of this: the codec factor times the patch size."""
        return self.factor * (self.network.patch_size if self.network is not None else 1)

    def fingerprint(self) -> dict[str, str]:
        return {
            "latentkit": __version__,
            "torch": torch.__version__,
            "device": self.device.type,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Save one of our models; loaded LoRAs are merged in at their current weights."""
        from latentkit.families.bundle import save_bundle

        bundle = self.components.bundle
        if bundle is None:
            raise InvalidArgument(
                f"only latentkit models can be saved as latentkit folders; this is a "
                f"{self.components.title} model"
            )
        if not self.loras:
            return save_bundle(bundle, path, dtype)
        from latentkit.models.lora import plain_denoiser

        training = {**bundle.training, "merged_loras": dict(self.loras)}
        merged = replace(bundle, denoiser=plain_denoiser(self.network), training=training)
        return save_bundle(merged, path, dtype)

    # -- adapters ----------------------------------------------------------------------------

    def load_lora(self, path: str | Path, weight: float = 1.0, name: str | None = None) -> str:
        """Add a LoRA file at `weight`; several can be active at once. Returns its adapter name."""
        adapters = self.components.adapters
        if adapters is None:
            raise ModelFileError("this model has no network that takes a LoRA")
        name = name or Path(path).stem
        if name in self.loras:
            raise InvalidArgument(f"a LoRA named {name!r} is already loaded")
        check_finite(f"weight of LoRA {name!r}", weight)
        adapters.load(Path(path), name)
        self.loras[name] = weight
        adapters.set_weights(self.loras)
        return name

    def set_lora_weights(self, weights: dict[str, float]) -> None:
        """Reweight loaded LoRAs (unnamed ones keep their weight); 0 turns one off exactly."""
        unknown = set(weights) - set(self.loras)
        if unknown:
            raise InvalidArgument(f"no LoRA named {sorted(unknown)}; loaded: {list(self.loras)}")
        self.loras.update(weights)
        self.components.adapters.set_weights(self.loras)

    def merge_loras(self) -> None:
        """Fold the LoRAs into the weights: sampling then costs what the base model costs."""
        if self.loras:
            self.components.adapters.merge()

    def unmerge_loras(self) -> None:
        if self.loras:
            self.components.adapters.unmerge()

    def load_tokens(self, path: str | Path) -> list[str]:
        """Teach the text encoder the tokens of a textual-inversion file; returns the tokens."""
        from latentkit.models.tokens import add_learned_tokens, read_tokens

        if not hasattr(self.text_encoder, "with_tokens"):
            raise InvalidArgument(
                f"token files are made for latentkit's MiniLM text encoder; this "
                f"{self.components.title} model uses {self.text_encoder.name}"
            )
        learned = read_tokens(path)
        self.text_encoder = add_learned_tokens(self.text_encoder, learned, f"token file {path}")
        self.token_files.append(Path(path).name)
        return list(learned.tokens)

    # -- recipes -----------------------------------------------------------------------------

    def recipe(self, prompt: str, **kwargs: Any) -> Recipe:
        """A validated recipe with this model's defaults filled in and a fresh seed if none."""
        d = self.defaults
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for key in ("steps", "cfg", "sampler", "shift"):
            kwargs.setdefault(key, getattr(d, key))
        kwargs.setdefault("seed", secrets.randbelow(2**31))
        kwargs.setdefault("height", self.native_size[0])
        kwargs.setdefault("width", self.native_size[1])
        if self.is_video:
            kwargs.setdefault("frames", self.codec.native_frames)
            kwargs.setdefault("fps", d.fps)
        elif kwargs.get("frames") is not None:
            raise InvalidArgument("frames is for video models; this model makes images")
        if d.guidance is not None:
            kwargs.setdefault("guidance", d.guidance)
        recipe = Recipe(prompt=prompt, **kwargs).validate()
        self.check_guidance(recipe)
        self.check_size(recipe.height, recipe.width)
        if recipe.frames is not None:
            recipe = replace(recipe, frames=self.frames_for(recipe.frames))
        return recipe

    @property
    def max_side(self) -> int:
        """The largest side a request may ask for: beyond it one image takes memory and time
        far past what this model is for."""
        return MAX_SIDE_FACTOR * max(self.native_size)

    def check_size(self, height: int, width: int) -> None:
        """Refuse sizes over `max_side` up front, with what they would cost; warn about slow
        ones (over 16x the native pixel count), which decode in tiles."""
        nh, nw = self.native_size
        if max(height, width) > self.max_side:
            need = self.decode_memory(height, width)
            raise InvalidArgument(
                f"size {width}x{height} is over this model's limit of {self.max_side}x"
                f"{self.max_side} ({MAX_SIDE_FACTOR}x its native {nw}x{nh}): decoding it at once "
                f"would take about {need / 1e9:,.0f} GB of memory. Up to the limit, large images "
                "decode in tiles, so memory stays bounded; time grows with the pixel count"
            )
        ratio = height * width / (nh * nw)
        if ratio > 16:
            warnings.warn(
                f"{width}x{height} has {ratio:.0f}x the pixels of the model's native {nw}x{nh}: "
                f"expect at least {ratio:.0f}x the time of a native image; it decodes in tiles",
                stacklevel=3,
            )

    def decode_memory(self, height: int, width: int) -> int:
        """Bytes of the decoder's full-resolution activations (three of its widest first-level
        maps in fp32): what decoding without tiles needs at the least."""
        vae = getattr(self.codec, "vae", None)
        channels = vae.config.block_out_channels[0] if vae is not None else 64
        return 3 * channels * height * width * 4

    def check_guidance(self, recipe: Recipe) -> None:
        """A guidance-distilled model (FLUX.1-dev) takes its guidance as an input: cfg stays 1
        unless true classifier-free guidance is asked for; other models take no `guidance`."""
        distilled = self.defaults.guidance is not None
        if recipe.guidance is not None and not distilled:
            raise InvalidArgument(
                f"guidance is the input of guidance-distilled models (FLUX.1-dev); this "
                f"{self.components.title} model is steered with cfg"
            )
        if distilled and recipe.cfg != 1.0 and not recipe.true_cfg:
            raise InvalidArgument(
                f"{self.components.title} is guidance-distilled: it is steered by --guidance "
                f"(default {self.defaults.guidance:g}) with cfg 1. cfg {recipe.cfg:g} would run "
                "true classifier-free guidance on top (twice the cost, needs a negative prompt): "
                "pass --true-cfg to ask for it"
            )

    def frames_for(self, frames: int) -> int:
        """Round a frame count up to one the causal codec takes, saying so when it changes."""
        check_positive_int("frames", frames)
        tf = self.codec.time_factor
        fixed = 1 + -(-(frames - 1) // tf) * tf
        if fixed != frames:
            warnings.warn(
                f"frames {frames} rounded up to {fixed}: the video VAE takes 1 + a multiple of "
                f"{tf} frames",
                stacklevel=3,
            )
        return fixed

    # -- components --------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str], negative: bool = False) -> PromptEmbeds:
        """Prompt embeddings in fp32 on the CPU (ops combine them; networks move them)."""
        return self.text_encoder.encode(prompts, negative=negative).to("cpu", torch.float32)

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels in [-1, 1] ([B, 3, H, W], or [B, 3, T, H, W] for video) -> normalised latents
        (posterior mean), on the CPU in fp32."""
        return self.codec.encode(pixels.to(self.device, self.dtype)).float().cpu().contiguous()

    @torch.no_grad()
    def decode(self, latents: Tensor, tile: int | None = None) -> Tensor:
        """Latents -> pixels in [-1, 1]; retries in fp32 if low precision overflowed."""
        if not torch.isfinite(latents).all():
            raise LatentkitError("latents contain NaN or Inf values; nothing to decode")
        tile = tile if tile is not None else self.auto_tile(latents)
        images = self.codec.decode(latents.to(self.device, self.dtype), tile=tile).float()
        if not torch.isfinite(images).all() and self.dtype != torch.float32:
            codec32 = self.codec.float()
            try:
                images = codec32.decode(latents.to(self.device, torch.float32), tile=tile)
            finally:
                self.codec.to(self.dtype)
        if not torch.isfinite(images).all():
            raise LatentkitError(
                "the decoder produced NaN or Inf values even in fp32: the model weights are broken"
            )
        return images.cpu()

    def auto_tile(self, latents: Tensor) -> int | None:
        """Tile image grids over twice the native size, where memory grows past the usual."""
        if latents.ndim != 4:
            return None
        limit = 2 * self.image_size // self.factor
        return limit if max(latents.shape[-2:]) > limit else None

    def preview(self, latents: Tensor) -> list[Image.Image]:
        from latentkit.data.images import tensor_to_pil

        with torch.no_grad():
            rgb = self.codec.preview(latents.float().to(self.device)).float().cpu()
        return tensor_to_pil(rgb[:, :, 0] if rgb.ndim == 5 else rgb)

    # -- sampling ----------------------------------------------------------------------------

    def latent_shape(self, height: int, width: int, frames: int | None = None) -> tuple[int, ...]:
        """[C, h, w], or [C, F, h, w] for a clip of `frames` frames."""
        self.codec.check_pixel_shape(height, width)
        cell = self.latent_cell
        for name, size in (("height", height), ("width", width)):
            if size % cell:
                raise InvalidArgument(f"{name} {size} must be a multiple of {cell} for this model")
        spatial = (height // self.factor, width // self.factor)
        if frames is None:
            return (self.codec.latent_channels, *spatial)
        latent_frames = (frames - 1) // self.codec.time_factor + 1
        return (self.codec.latent_channels, latent_frames, *spatial)

    def initial_noise(self, recipe: Recipe) -> tuple[Tensor, Callable[[], Tensor]]:
        """Unit noise and a source of fresh noise, both from one CPU generator per image."""
        shape = self.latent_shape(recipe.height, recipe.width, recipe.frames)
        gens = [torch.Generator("cpu").manual_seed(recipe.seed + i) for i in range(recipe.n)]

        def draw() -> Tensor:
            return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(self.device)

        return draw(), draw

    def times(self, recipe: Recipe) -> Tensor:
        """The model's sampling times for this recipe, from its start down to 0."""
        cell = self.latent_cell
        tokens = (recipe.height // cell) * (recipe.width // cell)
        if recipe.frames is not None:  # video tokens: LTX-Video shifts by the whole clip's count
            tokens *= (recipe.frames - 1) // self.codec.time_factor + 1
        return self.components.schedule.times(recipe.steps, recipe.shift, tokens)

    def start_scale(self, t: float) -> float:
        """x at time t is start_scale(t) * unit noise where sampling starts (1 at t = 1)."""
        return self.components.schedule.start_scale(float(t))

    def guided(
        self,
        prompt: str,
        negative_prompt: str,
        cfg: float,
        n: int,
        cond: PromptEmbeds | None = None,
        guidance: float | None = None,
    ) -> Velocity:
        """The network with prompts bound; cfg=1 runs the conditional pass alone.

        `cond` (one row per image) replaces the prompt's embedding: blends and morphs use it.
        """
        if self.network is None:
            raise ModelFileError(
                "this model has no denoiser (a codec-only bundle): it cannot generate"
            )
        if cond is None:
            cond = self.encode_prompt([prompt]).repeat(n)
        uncond = None if cfg == 1.0 else self.encode_prompt([negative_prompt], True).repeat(n)
        return guided(self.network, cond, uncond, cfg, guidance)

    @torch.no_grad()
    def sample(
        self,
        recipe: Recipe,
        x: Tensor,
        noise: Callable[[], Tensor] | None,
        ts: Tensor | None = None,
        callback: Callable[[Progress], None] | None = None,
        wrap: Callable[[Velocity], Velocity] | None = None,
        cond: PromptEmbeds | None = None,
    ) -> Tensor:
        """Integrate from x at ts[0] (default: the model's schedule) down to ts[-1].

        Ops pass their own start and schedule (img2img) or wrap the guided model (inpainting,
        image-to-video), so `generate` itself never grows a branch per operation.
        """
        model = self.guided(recipe.prompt, recipe.negative_prompt, recipe.cfg, x.shape[0], cond,
                            recipe.guidance)  # fmt: skip
        if wrap is not None:
            model = wrap(model)
        ts = ts if ts is not None else self.times(recipe)
        sampler = get_sampler(recipe.sampler)

        def on_step(info: StepInfo) -> None:
            if callback is not None:
                callback(Progress(info.step, info.total, info.t, info.x, info.denoised, self))

        x = x.to(self.device, torch.float32)
        out = sampler(model, x, ts.to(self.device), noise=noise, callback=on_step)
        if not torch.isfinite(out).all():
            raise LatentkitError(
                "sampling diverged (NaN or Inf in the latents); try a lower cfg or more steps"
            )
        return out.float().cpu()

    def denoise(
        self,
        recipe: Recipe,
        noise: Tensor,
        draw: Callable[[], Tensor] | None = None,
        **options: Any,
    ) -> Tensor:
        """Sample from unit noise: scaled to where the model's schedule starts, then integrated.
        `options` are sample()'s: callback, wrap, cond."""
        ts = self.times(recipe)
        x = noise.to(self.device, torch.float32) * self.start_scale(ts[0])
        return self.sample(recipe, x, draw, ts, **options)

    def generate(
        self,
        prompt: str,
        negative_prompt: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        sampler: str | None = None,
        n: int = 1,
        height: int | None = None,
        width: int | None = None,
        callback: Callable[[Progress], None] | None = None,
        frames: int | None = None,
        guidance: float | None = None,
        true_cfg: bool | None = None,
    ) -> Generation:
        """Text to images (or clips, on a video model). An empty prompt means unconditional;
        image i uses seed + i. `guidance` is FLUX.1-dev's distilled guidance; `true_cfg` asks a
        guidance-distilled model for classifier-free guidance (cfg) on top."""
        recipe = self.recipe(
            prompt,
            negative_prompt=negative_prompt or "",
            seed=seed,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            n=n,
            height=height,
            width=width,
            frames=frames,
            guidance=guidance,
            true_cfg=true_cfg,
        )
        return self.run(recipe, callback)

    def run(self, recipe: Recipe, callback: Callable[[Progress], None] | None = None) -> Generation:
        noise, draw = self.initial_noise(recipe)
        return self.finish(recipe, self.denoise(recipe, noise, draw, callback=callback))

    def finish(self, recipe: Recipe, latents: Tensor, **extra: Any) -> Generation:
        """Decode sampled latents into a Generation that knows how it was made."""
        from latentkit.data.images import tensor_to_pil

        pixels = self.decode(latents)
        result = Generation([], latents, recipe, self.model_id, self.fingerprint(), extra)
        if pixels.ndim == 5:
            from latentkit.data.video import tensor_to_clips

            result.clips = list(tensor_to_clips(pixels[:, :, : recipe.frames]))
        else:
            result.images = tensor_to_pil(pixels)
        return result
