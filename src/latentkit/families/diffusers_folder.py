"""A user's diffusers folder (`model_index.json`), read offline, handed to its family's builder.

The folder's modules are loaded one by one with `from_pretrained(local_files_only=True)` (never
the pipeline's `__call__`, never its safety checker), in the dtype they will run in. Which
classes a folder holds comes from its own `model_index.json`, as diffusers reads it; only the
classes latentkit drives are accepted. Nothing is fetched from a network.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import ModelFileError
from latentkit.families.base import Components
from latentkit.families.memory import check_fits, header_bytes, weight_files

# pipeline class -> (family builder module, the components it needs)
PIPELINES = {
    "StableDiffusionPipeline": ("stable_diffusion", ("unet", "vae", "text_encoder", "tokenizer")),
    "StableDiffusionXLPipeline": (
        "stable_diffusion",
        ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    ),
    "StableDiffusion3Pipeline": (
        "flow_match",
        ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    ),
    "FluxPipeline": (
        "flow_match",
        ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"),
    ),
    "PixArtAlphaPipeline": ("dit", ("transformer", "vae", "text_encoder", "tokenizer")),
    "PixArtSigmaPipeline": ("dit", ("transformer", "vae", "text_encoder", "tokenizer")),
    "SanaPipeline": ("dit", ("transformer", "vae", "text_encoder", "tokenizer")),
    "LTXPipeline": ("ltx_video", ("transformer", "vae", "text_encoder", "tokenizer")),
    "LTXImageToVideoPipeline": ("ltx_video", ("transformer", "vae", "text_encoder", "tokenizer")),
}
MODULE_CLASSES = {
    "diffusers": ("UNet2DConditionModel", "AutoencoderKL", "SD3Transformer2DModel",
                  "FluxTransformer2DModel", "PixArtTransformer2DModel", "SanaTransformer2DModel",
                  "AutoencoderDC", "LTXVideoTransformer3DModel", "AutoencoderKLLTXVideo"),
    "transformers": ("CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel",
                     "Gemma2Model", "CLIPTokenizer", "CLIPTokenizerFast", "T5Tokenizer",
                     "T5TokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"),
}  # fmt: skip
TOKENIZER_FILES = {
    "CLIP": ("vocab.json", "merges.txt"),
    "T5": ("spiece.model",),
    "Gemma": ("tokenizer.model",),
}  # the files each kind of tokenizer reads
NETWORKS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing: the folder has no {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} is not a JSON object")
    return data


@dataclass
class Folder:
    """A diffusers folder as its model_index.json describes it, with the weight files of each
    network it holds (chosen as diffusers would: plain files, else one variant)."""

    root: Path
    pipeline: str
    index: dict[str, Any]
    files: dict[str, list[Path]] = field(default_factory=dict)
    layout = "diffusers folder"

    @classmethod
    def open(cls, root: Path) -> Folder:
        from latentkit.families.registry import supported

        index = read_json(root / "model_index.json", "model index")
        pipeline = index.get("_class_name")
        if pipeline not in PIPELINES:
            raise ModelFileError(
                f"{root} is a diffusers folder of {pipeline!r}, which latentkit does not load "
                f"yet. Supported: {supported()}"
            )
        for name in PIPELINES[pipeline][1]:
            if not (root / name).is_dir():
                raise ModelFileError(
                    f"{root / name} is missing: a {pipeline} folder needs "
                    f"{', '.join(PIPELINES[pipeline][1])}"
                )
        folder = cls(root, pipeline, index)
        folder.files = {n: weight_files(root / n) for n in NETWORKS if folder.has(n)}
        return folder

    def has(self, name: str) -> bool:
        """Whether the folder holds this component (SD3's T5 may be left out: [null, null])."""
        entry = self.index.get(name)
        return bool(entry) and entry[0] is not None and (self.root / name).is_dir()

    def config(self, name: str) -> dict[str, Any]:
        filename = "scheduler_config.json" if name == "scheduler" else "config.json"
        return read_json(self.root / name / filename, f"{name} config")

    def check_fits(self, title: str, dtype: torch.dtype, device: torch.device | None) -> None:
        check_fits(title, [f for fs in self.files.values() for f in fs], dtype, device)

    def load(self, name: str, dtype: torch.dtype | None = None) -> Any:
        """One component through its library's from_pretrained, offline; networks in `dtype`."""
        library, cls_name = self.index[name][:2]
        if cls_name not in MODULE_CLASSES.get(library, ()):
            raise ModelFileError(f"{self.root / name} holds a {library}.{cls_name}, which "
                                 f"latentkit does not drive")  # fmt: skip
        cls = getattr(importlib.import_module(library), cls_name)
        if name.startswith("tokenizer"):
            return self._tokenizer(name, cls)
        variant = _variant(self.files[name])
        try:
            return cls.from_pretrained(
                self.root, subfolder=name, local_files_only=True, dtype=dtype, variant=variant,
                use_safetensors=True,
            ).eval()  # fmt: skip
        except (OSError, ValueError, RuntimeError) as e:
            detail = " ".join(str(e).split())[:300]
            raise ModelFileError(f"{self.root / name} cannot be loaded: {detail}") from None

    def _tokenizer(self, name: str, cls: Any) -> Any:
        folder = self.root / name
        needs = next(f for prefix, f in TOKENIZER_FILES.items() if cls.__name__.startswith(prefix))
        has_bpe = all((folder / f).is_file() for f in needs)
        if not has_bpe and not (folder / "tokenizer.json").is_file():
            raise ModelFileError(
                f"{folder} needs the {cls.__name__.removesuffix('Fast')} files: "
                f"{' and '.join(needs)} (or tokenizer.json); copy them from the model's release "
                "into that folder"
            )
        try:
            return cls.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{folder} cannot be loaded: {' '.join(str(e).split())}") from None

    def fingerprint(self) -> str:
        """12 hex digits from each weight file's name, size and header: changes when any weight
        file is replaced, without hashing gigabytes at every load."""
        h = hashlib.sha256()
        for component in sorted(self.files):
            for f in self.files[component]:
                h.update(f"{component}/{f.name}:{f.stat().st_size}".encode())
                h.update(header_bytes(f))
        return h.hexdigest()[:12]

    def identity(self) -> dict[str, Any]:
        """The `Components` fields naming the model: folder name, fingerprinted id, source."""
        return {"name": self.root.name, "model_id": f"{self.root.name}@{self.fingerprint()}",
                "source": self.root}  # fmt: skip


@dataclass
class LoadedPipeline:
    """A diffusers pipeline already loaded from a single file, read like a `Folder` so the
    family builders serve both: components come from the pipeline object, configs from its
    modules."""

    pipe: Any
    root: Path
    model_id: str
    layout = "single file"

    @property
    def pipeline(self) -> str:
        return type(self.pipe).__name__

    def has(self, name: str) -> bool:
        return getattr(self.pipe, name, None) is not None

    def config(self, name: str) -> dict[str, Any]:
        return dict(getattr(self.pipe, name).config)

    def check_fits(self, title: str, dtype: torch.dtype, device: torch.device | None) -> None:
        """Checked against the file's header before the pipeline was loaded."""

    def load(self, name: str, dtype: torch.dtype | None = None) -> Any:
        part = getattr(self.pipe, name)
        return part.eval() if hasattr(part, "eval") else part

    def identity(self) -> dict[str, Any]:
        return {"name": self.root.stem, "model_id": self.model_id, "source": self.root}


def _variant(files: list[Path]) -> str | None:
    """'fp16' when the folder only has diffusion_pytorch_model.fp16.safetensors-style files."""
    suffixes = {f.name.split(".")[-2] for f in files if f.name.count(".") >= 2}
    plain = [f for f in files if f.name.count(".") == 1]
    return None if plain or not suffixes else sorted(suffixes)[0]


def quiet_libraries() -> None:
    """transformers' load report and progress bars talk about internals a user cannot act on."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def load_components(
    root: Path,
    *,
    prediction: str | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Components:
    """A diffusers folder's components, built by its family; refused before loading when the
    weights cannot fit where they will run."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Folder.open(Path(root))
    quiet_libraries()
    builder = importlib.import_module(f"latentkit.families.{PIPELINES[folder.pipeline][0]}")
    return builder.build(folder, prediction=prediction, device=device, dtype=dtype or torch.float32)
