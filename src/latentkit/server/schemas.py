"""Request bodies: JSON in, checked field by field before anything runs.

Numbers carry their ranges here (NaN and infinities refused), ids are checked against path
traversal, and every failure answers 422 naming the field. Images are referred to by the id that
`POST /api/uploads` (multipart) or an earlier job returned; nothing else reaches the file system.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from latentkit.diffusion.samplers import SAMPLERS
from latentkit.errors import MAX_SEED
from latentkit.pipeline import SamplingOptions
from latentkit.server.storage import check_id


def _id(value: str) -> str:
    try:
        return check_id(value)
    except ValueError as e:
        raise ValueError(str(e)) from None


def _sampler(value: str | None) -> str | None:
    if value is not None and value not in SAMPLERS:
        raise ValueError(f"unknown sampler {value!r}; choose one of: {', '.join(SAMPLERS)}")
    return value


FileId = Annotated[str, AfterValidator(_id)]
Prompt = Annotated[str, Field(max_length=2000)]
Seed = Annotated[int | None, Field(default=None, ge=0, le=MAX_SEED)]
Steps = Annotated[int | None, Field(default=None, ge=1, le=500)]
Cfg = Annotated[float | None, Field(default=None, ge=0.0, le=50.0)]
Sampler = Annotated[str | None, AfterValidator(_sampler)]
Side = Annotated[int | None, Field(default=None, ge=1, le=2048)]


class Body(BaseModel):
    """Unknown fields are refused: a typo such as `stregth` should not be silently ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model: str | None = Field(
        default=None,
        max_length=200,
        description="A model this server offers (GET /v1/models), such as the served "
        "model's `-fast` variant; default: the served model.",
    )


class RecipeFields(Body):
    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    seed: Seed = None
    steps: Steps = None
    cfg: Cfg = None
    sampler: Sampler = None
    n: int = Field(default=1, ge=1, le=16)

    def options(self) -> SamplingOptions:
        """The request type the CLI builds from its flags too."""
        return SamplingOptions(self.negative_prompt, self.seed, self.steps, self.cfg,
                               self.sampler, self.n)  # fmt: skip

    def recipe_args(self) -> dict[str, object]:
        """The keyword arguments generate and the ops share."""
        return self.options().args()


class GenerateRequest(RecipeFields):
    width: Side = None
    height: Side = None
    noise: FileId | None = Field(default=None, description="Start from noise saved by /invert.")


KeepSize = Annotated[
    bool,
    Field(
        default=False,
        description="Work at the image's own size; by default a larger one is shrunk to the "
        "model's (aspect kept), as the CLI's --keep-size.",
    ),
]


class Img2ImgRequest(RecipeFields):
    image: FileId
    keep_size: KeepSize = False
    strength: float = Field(default=0.6, ge=0.0, le=1.0)


class InpaintRequest(RecipeFields):
    image: FileId
    mask: FileId = Field(description="White = regenerate; same size as the image.")
    keep_size: KeepSize = False
    feather: int | None = Field(default=None, ge=0, le=256)
    keep_unmasked: bool = True


class OutpaintRequest(RecipeFields):
    image: FileId
    keep_size: KeepSize = False
    left: int = Field(default=0, ge=0, le=1024)
    right: int = Field(default=0, ge=0, le=1024)
    top: int = Field(default=0, ge=0, le=1024)
    bottom: int = Field(default=0, ge=0, le=1024)


class Keyframe(BaseModel):
    """Exactly one of: a prompt, a seed (shared prompt), or an image id (inverted)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    prompt: Prompt | None = None
    seed: Seed = None
    image: FileId | None = None

    @model_validator(mode="after")
    def one_kind(self) -> Keyframe:
        given = [k for k in ("prompt", "seed", "image") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of prompt, seed or image, got {given or 'none'}")
        return self


class InterpolateRequest(Body):
    keyframes: list[Keyframe] = Field(min_length=2, max_length=8)
    frames: int = Field(default=8, ge=2, le=64)
    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    seed: Seed = None
    steps: Steps = None
    cfg: Cfg = None
    sampler: Sampler = None
    even: bool = False
    animation: Literal["gif", "mp4"] | None = None
    fps: int = Field(default=8, ge=1, le=60)


class InvertRequest(Body):
    image: FileId
    prompt: Prompt = ""
    steps: Steps = None
    sampler: Literal["euler", "heun"] = "euler"
    cfg: float = Field(default=1.0, ge=0.0, le=50.0)


class EditRequest(Body):
    image: FileId
    direction: FileId = Field(description="Name of a saved direction (GET /api/directions).")
    amounts: list[Annotated[float, Field(ge=-20.0, le=20.0)]] = Field(min_length=1, max_length=33)
    prompt: Prompt | None = Field(
        default=None, description="Prompt for inversion (text directions); default: the image's."
    )
    steps: Steps = None


class DirectionRequest(Body):
    name: FileId
    positive: list[Prompt] = Field(min_length=1, max_length=64)
    negative: list[Prompt] = Field(min_length=1, max_length=64)


class EncodeRequest(Body):
    image: FileId


class DecodeRequest(Body):
    latents: FileId


class MapRequest(Body):
    source: Literal["gallery", "openmoji"] = "gallery"
    method: Literal["pca", "tsne"] = "pca"
    size: int = Field(default=512, ge=64, le=4096)
    thumb: int = Field(default=32, ge=4, le=256)
    limit: int = Field(default=200, ge=3, le=5000)


class VideoRequest(Body):
    """Text to a clip, or text plus a first frame (`image`, the video model's frame size)."""

    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    image: FileId | None = Field(default=None, description="First frame: an upload/gallery id.")
    frames: int | None = Field(
        default=None, ge=1, le=257, description="Rounded up to 1 + a multiple of 4."
    )
    seed: Seed = None
    steps: Steps = None
    cfg: Cfg = None
    sampler: Sampler = None
    fps: int | None = Field(default=None, ge=1, le=60)
