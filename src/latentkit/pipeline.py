"""The pipeline: holds the components and turns a recipe into images. Nothing else.

Noise is drawn on the CPU from one generator per image (image i of a batch uses seed + i), so an
image depends on its seed alone: not on batch size, batch position or device.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from latentkit import __version__
from latentkit.bundle import Bundle, load_bundle, save_bundle
from latentkit.diffusion.guidance import guided_denoiser
from latentkit.diffusion.samplers import Denoiser, StepInfo, get_sampler
from latentkit.diffusion.schedules import flow_timesteps
from latentkit.errors import (
    MAX_SEED,
    InvalidArgument,
    LatentkitError,
    ModelFileError,
    check_finite,
    check_positive_int,
    check_seed,
)
from latentkit.models.text import PromptEmbeds, check_prompt, load_text_encoder

MAX_BATCH = 4096
DEFAULTS = {"steps": 25, "cfg": 4.0, "sampler": "euler", "shift": 1.0}


def check_sampling_fields(recipe: Any) -> None:
    """Checks every recipe shares, image or video: prompts, seed, steps, cfg, shift, sampler."""
    check_prompt(recipe.prompt)
    check_prompt(recipe.negative_prompt)
    check_seed(recipe.seed)
    check_positive_int("steps", recipe.steps)
    check_finite("cfg", recipe.cfg, low=0.0)
    check_finite("shift", recipe.shift, low=1e-3)
    get_sampler(recipe.sampler)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a generation; written into PNG metadata so it can be replayed."""

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

    def validate(self) -> Recipe:
        check_sampling_fields(self)
        check_positive_int("n", self.n)
        if self.n > MAX_BATCH:
            raise InvalidArgument(f"n must be at most {MAX_BATCH}, got {self.n}")
        if self.seed + self.n - 1 > MAX_SEED:
            raise InvalidArgument(f"seed + n - 1 must be at most 2^63-1, got seed {self.seed}")
        return self

    def for_image(self, i: int) -> Recipe:
        """The one-image recipe that regenerates image i of this batch."""
        return replace(self, seed=self.seed + i, n=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    images: list[Image.Image]
    latents: Tensor
    recipe: Recipe
    model_id: str
    fingerprint: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)  # what an op adds: strength, source...

    def recipe_of(self, i: int) -> dict[str, Any]:
        """Metadata for image i: its own recipe plus the model and software that made it."""
        return {
            **self.recipe.for_image(i).to_dict(),
            **self.extra,
            "model": self.model_id,
            "fingerprint": self.fingerprint,
        }


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model_path() -> Path:
    """$LATENTKIT_MODEL if set, else the model shipped inside the package."""
    env = os.environ.get("LATENTKIT_MODEL")
    if env:
        return Path(env)
    shipped = Path(__file__).parent / "weights" / "default"
    if (shipped / "latentkit.json").is_file():
        return shipped
    raise ModelFileError(
        "no model given and no default model found: pass --model DIR (Python: Pipeline.load(DIR)) "
        "or set LATENTKIT_MODEL; train one with `latentkit train vae` then "
        "`latentkit train denoiser`"
    )


class Pipeline:
    def __init__(
        self,
        bundle: Bundle,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.bundle = bundle
        self.device = torch.device(device) if device is not None else default_device()
        # CPU runs fp32 throughout; on a GPU the networks run in bf16.
        self.dtype = dtype or (torch.float32 if self.device.type == "cpu" else torch.bfloat16)
        self.codec = bundle.codec.to(self.device, self.dtype).eval()
        self.denoiser = (
            bundle.denoiser.to(self.device, self.dtype).eval() if bundle.denoiser else None
        )
        self.text_encoder = load_text_encoder(bundle.text)
        self.loras: dict[str, float] = {}  # adapter name -> weight, in load order
        self.token_files: list[str] = []

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Pipeline:
        return cls(load_bundle(path if path is not None else default_model_path()), device, dtype)

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Save the model; loaded LoRAs are merged in at their current weights."""
        if not self.loras:
            return save_bundle(self.bundle, path, dtype)
        from latentkit.models.lora import plain_denoiser

        training = {**self.bundle.training, "merged_loras": dict(self.loras)}
        merged = replace(self.bundle, denoiser=plain_denoiser(self.denoiser), training=training)
        return save_bundle(merged, path, dtype)

    @property
    def model_id(self) -> str:
        """The base model's id, plus each LoRA and token file in use, so recipes replay exactly."""
        base = self.bundle.model_id or self.bundle.name
        extras = [f"lora:{n}*{w:g}" for n, w in self.loras.items()] + [
            f"tokens:{t}" for t in self.token_files
        ]
        return "+".join([base, *extras])

    # -- adapters ----------------------------------------------------------------------------

    def load_lora(self, path: str | Path, weight: float = 1.0, name: str | None = None) -> str:
        """Add a LoRA file at `weight`; several can be active at once. Returns its adapter name."""
        from latentkit.models.lora import load_lora, read_lora

        if self.denoiser is None:
            raise ModelFileError("this model has no denoiser, so a LoRA has nothing to adapt")
        lora = read_lora(path)
        name = name or Path(path).stem
        if name in self.loras:
            raise InvalidArgument(f"a LoRA named {name!r} is already loaded")
        base = lora.info.get("base_model", "")
        if base and base.split("+")[0] != self.bundle.model_id:
            import warnings

            warnings.warn(
                f"LoRA {Path(path).name} was trained on {base}, loading it on "
                f"{self.bundle.model_id}",
                stacklevel=2,
            )
        self.unmerge_loras()
        load_lora(self.denoiser, lora, name)
        self.denoiser.to(self.device, self.dtype)
        self.loras[name] = weight
        self.set_lora_weights({})
        return name

    def set_lora_weights(self, weights: dict[str, float]) -> None:
        """Reweight loaded LoRAs (unnamed ones keep their weight); 0 turns one off exactly."""
        from latentkit.models.lora import set_lora_weights

        unknown = set(weights) - set(self.loras)
        if unknown:
            raise InvalidArgument(f"no LoRA named {sorted(unknown)}; loaded: {list(self.loras)}")
        self.loras.update(weights)
        set_lora_weights(self.denoiser, self.loras)

    def merge_loras(self) -> None:
        """Fold the LoRAs into the weights: sampling then costs what the base model costs."""
        from latentkit.models.lora import merge_loras

        if self.loras:
            merge_loras(self.denoiser)

    def unmerge_loras(self) -> None:
        from latentkit.models.lora import unmerge_loras

        if self.loras:
            unmerge_loras(self.denoiser)

    def load_tokens(self, path: str | Path) -> list[str]:
        """Teach the text encoder the tokens of a textual-inversion file; returns the tokens."""
        from latentkit.models.tokens import add_learned_tokens, read_tokens

        learned = read_tokens(path)
        self.text_encoder = add_learned_tokens(self.text_encoder, learned, f"token file {path}")
        self.token_files.append(Path(path).name)
        return list(learned.tokens)

    @property
    def image_size(self) -> int:
        return self.codec.config.image_size

    @property
    def factor(self) -> int:
        return self.codec.factor

    @property
    def latent_cell(self) -> int:
        """Image sides must be multiples of this: the codec factor times the patch size."""
        return self.factor * (self.denoiser.config.patch_size if self.denoiser else 1)

    def fingerprint(self) -> dict[str, str]:
        return {
            "latentkit": __version__,
            "torch": torch.__version__,
            "device": self.device.type,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def recipe(self, prompt: str, **kwargs: Any) -> Recipe:
        """A validated recipe with this model's defaults filled in and a fresh seed if none."""
        defaults = {**DEFAULTS, **self.bundle.sampling}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for key in ("steps", "cfg", "sampler", "shift"):
            kwargs.setdefault(key, defaults[key])
        kwargs.setdefault("seed", secrets.randbelow(2**31))
        kwargs.setdefault("height", self.image_size)
        kwargs.setdefault("width", self.image_size)
        return Recipe(prompt=prompt, **kwargs).validate()

    # -- components --------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str]) -> PromptEmbeds:
        return self.text_encoder.encode(prompts).to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Pixels in [-1, 1] -> normalised latents (posterior mean), on the CPU in fp32."""
        return self.codec.encode(images.to(self.device, self.dtype)).float().cpu()

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
        """Tile only grids over twice the training size, where memory grows past the usual."""
        limit = 2 * self.codec.config.latent_size
        return limit if max(latents.shape[-2:]) > limit else None

    def preview(self, latents: Tensor) -> list[Image.Image]:
        from latentkit.data.images import tensor_to_pil

        with torch.no_grad():
            return tensor_to_pil(self.codec.preview(latents.float()).cpu())

    # -- sampling ----------------------------------------------------------------------------

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        self.codec.check_image_shape(height, width)
        cell = self.latent_cell
        for name, size in (("height", height), ("width", width)):
            if size % cell:
                raise InvalidArgument(f"{name} {size} must be a multiple of {cell} for this model")
        return self.codec.config.latent_channels, height // self.factor, width // self.factor

    def initial_noise(self, recipe: Recipe) -> tuple[Tensor, Callable[[], Tensor]]:
        """Starting noise and a source of fresh noise, both from one CPU generator per image."""
        shape = self.latent_shape(recipe.height, recipe.width)
        gens = [torch.Generator("cpu").manual_seed(recipe.seed + i) for i in range(recipe.n)]

        def draw() -> Tensor:
            return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(
                self.device, self.dtype
            )

        return draw(), draw

    def guided(
        self,
        prompt: str,
        negative_prompt: str,
        cfg: float,
        n: int,
        cond: PromptEmbeds | None = None,
    ) -> Denoiser:
        """The denoiser with prompts bound; cfg=1 runs the conditional pass alone.

        `cond` (one row per image) replaces the prompt's embedding: blends and morphs use it.
        """
        if self.denoiser is None:
            raise ModelFileError(
                "this model has no denoiser (a codec-only bundle): it cannot generate"
            )
        if cond is None:
            cond = self.encode_prompt([prompt]).repeat(n)
        cond = cond.to(self.device, self.dtype)
        uncond = None if cfg == 1.0 else self.encode_prompt([negative_prompt]).repeat(n)
        return guided_denoiser(self.denoiser, cond, uncond, cfg)

    @torch.no_grad()
    def sample(
        self,
        recipe: Recipe,
        x: Tensor,
        noise: Callable[[], Tensor] | None,
        ts: Tensor | None = None,
        callback: Callable[[Progress], None] | None = None,
        wrap: Callable[[Denoiser], Denoiser] | None = None,
        cond: PromptEmbeds | None = None,
    ) -> Tensor:
        """Integrate from x at ts[0] down to ts[-1].

        Ops pass their own start and schedule (img2img) or wrap the guided denoiser
        (inpainting), so `generate` itself never grows a branch per operation.
        """
        model = self.guided(recipe.prompt, recipe.negative_prompt, recipe.cfg, x.shape[0], cond)
        if wrap is not None:
            model = wrap(model)
        ts = ts if ts is not None else flow_timesteps(recipe.steps, shift=recipe.shift)
        sampler = get_sampler(recipe.sampler)

        def on_step(info: StepInfo) -> None:
            if callback is not None:
                callback(Progress(info.step, info.total, info.t, info.x, info.denoised, self))

        out = sampler(model, x, ts.to(self.device), noise=noise, callback=on_step)
        if not torch.isfinite(out).all():
            raise LatentkitError(
                "sampling diverged (NaN or Inf in the latents); try a lower cfg or more steps"
            )
        return out.float().cpu()

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
    ) -> Generation:
        """Text to images. An empty prompt means unconditional; image i uses seed + i."""
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
        )
        return self.run(recipe, callback)

    def run(self, recipe: Recipe, callback: Callable[[Progress], None] | None = None) -> Generation:
        x, noise = self.initial_noise(recipe)
        return self.finish(recipe, self.sample(recipe, x, noise, callback=callback))

    def finish(self, recipe: Recipe, latents: Tensor, **extra: Any) -> Generation:
        """Decode sampled latents into a Generation that knows how it was made."""
        from latentkit.data.images import tensor_to_pil

        images = tensor_to_pil(self.decode(latents))
        return Generation(images, latents, recipe, self.model_id, self.fingerprint(), extra)
