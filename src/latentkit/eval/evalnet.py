"""The evaluation network: a small CLIP of our own, image features aligned with MiniLM captions.

No pretrained image network can be downloaded here, so the yardstick is trained on the OpenMoji
training split: a small residual CNN maps an image, and a two-layer projection maps the frozen
MiniLM pooled caption vector, into one space where matching pairs score highest (InfoNCE, as in
CLIP). Its features give Frechet distances, image-text similarity and caption retrieval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor, nn

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.files import atomic_save_tensors, atomic_write_bytes

WEIGHTS_FILE = "evalnet.safetensors"
CONFIG_FILE = "evalnet.json"


@dataclass(frozen=True)
class EvalNetConfig:
    image_size: int = 32
    widths: tuple[int, ...] = (48, 96, 192)
    text_dim: int = 384
    embed_dim: int = 256

    @staticmethod
    def from_dict(data: dict) -> EvalNetConfig:
        return EvalNetConfig(**{**data, "widths": tuple(data["widths"])})


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageEncoder(nn.Module):
    """A 2x2 patch stem, one residual block per resolution, halving it between stages, then a
    mean pool: cheap enough to train on two CPU cores in minutes."""

    def __init__(self, config: EvalNetConfig) -> None:
        super().__init__()
        w = config.widths
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], 2, stride=2)]
        for i, width in enumerate(w):
            layers.append(ResBlock(width))
            if i + 1 < len(w):
                layers.append(nn.Conv2d(width, w[i + 1], 3, stride=2, padding=1))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.LayerNorm(w[-1]), nn.Linear(w[-1], config.embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)  # [B, C, H / 2^len(widths), W / 2^len(widths)]
        return self.head(h.mean(dim=(2, 3)))  # [B, E]


class EvalNetwork(nn.Module):
    """Image and caption features in one normalised space; `logit_scale` is CLIP's temperature."""

    def __init__(self, config: EvalNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or EvalNetConfig()
        self.image_encoder = ImageEncoder(self.config)
        self.text_proj = nn.Sequential(
            nn.Linear(self.config.text_dim, 512), nn.GELU(), nn.Linear(512, self.config.embed_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.provenance: dict = {}

    def encode_pixels(self, x: Tensor) -> Tensor:
        """[B, 3, S, S] in [-1, 1] at the network's size -> normalised [B, E]."""
        return F.normalize(self.image_encoder(x), dim=-1)

    def encode_pooled(self, pooled: Tensor) -> Tensor:
        """MiniLM pooled caption vectors [B, 384] -> normalised [B, E]."""
        return F.normalize(self.text_proj(pooled), dim=-1)

    @torch.no_grad()
    def image_features(self, images: ImagesLike, batch: int = 256) -> Tensor:
        """Features of images of any size (resized to the network's), as float32 on the CPU."""
        x = to_network_input(images, self.config.image_size)
        device = next(self.parameters()).device
        parts = [
            self.encode_pixels(x[i : i + batch].to(device)).float().cpu()
            for i in range(0, len(x), batch)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.embed_dim)

    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> Tensor:
        device = next(self.parameters()).device
        return self.encode_pooled(pooled_captions(prompts).to(device)).float().cpu()

    def similarity(self, images: ImagesLike, prompts: Sequence[str]) -> Tensor:
        """Cosine similarity [n_images, n_prompts]."""
        return self.image_features(images) @ self.text_features(prompts).T


ImagesLike = Tensor | np.ndarray | Sequence[Image.Image]


def pooled_captions(captions: Sequence[str], batch: int = 256) -> Tensor:
    """MiniLM's pooled vectors [N, 384] for the captions, from the shared encoder."""
    from latentkit.config import TextConfig
    from latentkit.models.text import load_text_encoder

    encoder = load_text_encoder(TextConfig())
    starts = range(0, len(captions), batch)
    return torch.cat([encoder.encode(list(captions[i : i + batch])).pooled for i in starts])


def to_network_input(images: ImagesLike, size: int) -> Tensor:
    """uint8 [B, H, W, 3] (array or tensor) or PIL images -> float [B, 3, size, size] in [-1, 1]."""
    if isinstance(images, np.ndarray | Tensor):
        array = torch.as_tensor(np.asarray(images))
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != torch.uint8:
            raise InvalidArgument(
                f"images must be uint8 [B, H, W, 3], got {tuple(array.shape)} {array.dtype}"
            )
        x = array.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    else:
        if not images:
            return torch.zeros(0, 3, size, size)
        x = torch.stack(
            [
                torch.from_numpy(np.array(img.convert("RGB").resize((size, size), Image.LANCZOS)))
                for img in images
            ]
        )
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.clamp(-1, 1)


def shipped_evalnet_path() -> Path:
    return Path(__file__).resolve().parent.parent / "weights" / "evalnet"


def save_eval_network(net: EvalNetwork, folder: Path, extra: dict | None = None) -> Path:
    """fp16 safetensors plus a JSON config (with training provenance), each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    atomic_save_tensors(tensors, folder / WEIGHTS_FILE)
    meta = {"config": asdict(net.config), **(extra or {})}
    atomic_write_bytes(folder / CONFIG_FILE, json.dumps(meta, indent=2).encode())
    return folder


_LOADED: dict[str, EvalNetwork] = {}


def load_eval_network(folder: str | Path | None = None) -> EvalNetwork:
    """The shipped evaluation network (or one at `folder`), in fp32, cached per path."""
    folder = Path(folder) if folder is not None else shipped_evalnet_path()
    key = str(folder.resolve())
    if key in _LOADED:
        return _LOADED[key]
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelFileError(f"evaluation network file missing: {path}")
    try:
        meta = json.loads(config_path.read_text())
        net = EvalNetwork(EvalNetConfig.from_dict(meta["config"]))
        state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
        net.load_state_dict(state)
        net.provenance = {k: v for k, v in meta.items() if k != "config"}
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"cannot read the evaluation network at {folder}: {exc}") from exc
    _LOADED[key] = net.eval().requires_grad_(False)
    return _LOADED[key]
