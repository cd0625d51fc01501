"""latentkit's own model folders, image and video: one format, one loader, one writer.

A folder holds latentkit.json and one diffusers-style subfolder per component (`vae/`,
`transformer/`, each with config.json and diffusion_pytorch_model.safetensors; an image model
may also carry `student/`, a few-step distilled transformer that `--fast` samples with), so
`AutoencoderKL.from_pretrained(folder / "vae")` works on an image model and
`AutoencoderKLLTXVideo.from_pretrained(folder / "vae")` on a video model. latentkit.json holds the
architecture configs, the latent statistics and each file's sha256, and is written last, so an
interrupted save is caught at load time, never half-read. Video models say `"kind": "video"`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentkit.config import (
    CodecConfig,
    DenoiserConfig,
    TextConfig,
    VideoCodecConfig,
    VideoDenoiserConfig,
    from_dict,
    to_dict,
)
from latentkit.diffusion.schedules import FlowSchedule
from latentkit.errors import InvalidArgument, LatentkitError, ModelFileError
from latentkit.families.base import Components, Defaults
from latentkit.files import atomic_save_tensors, atomic_write_bytes, sha256_of

FORMAT = "latentkit-bundle"
FORMAT_VERSION = 1
MANIFEST = "latentkit.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
CODEC_DIR = "vae"
DENOISER_DIR = "transformer"
STUDENT_DIR = "student"
WEIGHTS_ROOT = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class Kind:
    """What differs between our image and video models: the classes and their defaults."""

    name: str
    codec_config: type
    denoiser_config: type
    codec_stats: tuple[str, ...]
    defaults: Defaults
    shipped: str  # folder under latentkit/weights
    env: str  # variable naming another default model
    make_codec: Callable[[Any], nn.Module]
    make_denoiser: Callable[[Any, Any], nn.Module]


def _image_codec(config: CodecConfig) -> nn.Module:
    from latentkit.models.codec import Codec

    return Codec.from_config(config)


def _image_denoiser(config: DenoiserConfig, codec: Any) -> nn.Module:
    from latentkit.models.denoiser import Denoiser

    return Denoiser(config)


def _video_codec(config: VideoCodecConfig) -> nn.Module:
    from latentkit.models.video_codec import VideoCodec

    return VideoCodec.from_config(config)


def _video_denoiser(config: VideoDenoiserConfig, codec: Any) -> nn.Module:
    from latentkit.models.video_denoiser import VideoDenoiser

    return VideoDenoiser.from_config(config, codec.time_factor, codec.spatial_factor)


KINDS = {
    "image": Kind(
        "image", CodecConfig, DenoiserConfig, ("latent_shift", "latent_scale", "preview_weights"),
        Defaults(steps=25, cfg=4.0), "default", "LATENTKIT_MODEL", _image_codec, _image_denoiser,
    ),
    "video": Kind(
        "video", VideoCodecConfig, VideoDenoiserConfig, ("latent_shift", "latent_scale"),
        Defaults(steps=20, cfg=3.0), "video", "LATENTKIT_VIDEO_MODEL", _video_codec,
        _video_denoiser,
    ),
}  # fmt: skip


@dataclass
class Bundle:
    """The loaded parts of one of our model folders; the text encoder is named, not stored."""

    codec: Any  # models.codec.Codec or models.video_codec.VideoCodec
    text: TextConfig
    denoiser: Any = None  # models.denoiser.Denoiser or models.video_denoiser.VideoDenoiser
    kind: str = "image"
    name: str = "latentkit-model"
    sampling: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    student: Any = None  # a distilled few-step Denoiser of the same architecture, or None
    student_info: dict[str, Any] = field(default_factory=dict)  # its "sampling" and "training"


def shipped_model(kind: str = "image") -> Path:
    """$LATENTKIT_MODEL ($LATENTKIT_VIDEO_MODEL) if set, else the model inside the package."""
    spec = KINDS[kind]
    env = os.environ.get(spec.env)
    if env:
        return Path(env)
    shipped = WEIGHTS_ROOT / spec.shipped
    if (shipped / MANIFEST).is_file():
        return shipped
    what = "" if kind == "image" else f"{kind} "
    raise ModelFileError(
        f"no {what}model given and none shipped: pass --model DIR (Python: Pipeline.load(DIR)) "
        f"or set {spec.env}; train one with `latentkit train "
        f"{'vae' if kind == 'image' else 'video-vae'}` first"
    )


ENCODER_PARTS = ("encoder.", "quant_conv.")


def with_decoder_of(bundle: Bundle, tuned: Bundle) -> Bundle:
    """`bundle` with the codec of `tuned`, a decoder-only fine-tune of the same encoder
    (`train vae --decoder-only`): the denoiser's latents mean the same thing under both, so it
    needs no retraining. Refused when the encoder or the latent statistics differ."""
    old, new = bundle.codec, tuned.codec
    if to_dict(old.config) != to_dict(new.config):
        raise InvalidArgument(
            f"the codec to swap in has config {to_dict(new.config)}, the model's is "
            f"{to_dict(old.config)}"
        )
    a, b = old.state_dict(), new.state_dict()
    kept = [k for k in a if k.startswith(("latent_", *(f"vae.{p}" for p in ENCODER_PARTS)))]
    changed = [k for k in kept if not torch.equal(a[k].float(), b[k].float())]
    if changed:
        raise InvalidArgument(
            f"the codec to swap in has another encoder or latent statistics ({changed[0]} "
            "differs): only a decoder trained with --decoder-only on this model's codec fits"
        )
    training = {**bundle.training, "codec": tuned.training.get("codec", {})}
    return replace(bundle, codec=new, training=training)


def save_bundle(bundle: Bundle, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save weights (cast to `dtype` if given, e.g. fp16 for shipping), manifest last."""
    spec = KINDS[bundle.kind]
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    codec = bundle.codec
    head = {"kind": bundle.kind} if bundle.kind != "image" else {}  # image folders predate kinds
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **head,
        "name": bundle.name,
        "codec": {
            "config": to_dict(codec.config),
            **{stat: getattr(codec, stat).tolist() for stat in spec.codec_stats},
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
    if bundle.student is not None:
        manifest["student"] = student_entry(bundle.student, bundle.student_info, root, dtype)
    return _write_manifest(root, manifest)


def _write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Last, after every weight file it names: an interrupted save leaves the old manifest."""
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=2).encode())
    return root


def student_entry(
    student: nn.Module, info: dict[str, Any], root: Path, dtype: torch.dtype | None
) -> dict[str, Any]:
    """Write the student's weights; its manifest entry, with the sampling settings it was
    distilled for (the defaults `--fast` uses) and how it was trained."""
    return {
        "config": to_dict(student.config),
        **_save_component(student.net, root / STUDENT_DIR, dtype),
        "sampling": info.get("sampling", {}),
        "training": info.get("training", {}),
    }


def attach_student(model_dir: str | Path, student_dir: str | Path) -> Path:
    """Store the denoiser of a `latentkit distill` folder inside its teacher's folder as
    `student/`, where `--fast` finds it. The teacher's files are left as they are (so shipped
    fp16 weights stay fp16); the student is written in the dtype of the teacher's denoiser."""
    root, source = Path(model_dir), Path(student_dir)
    teacher, student = load_bundle(root, kind="image"), load_bundle(source, kind="image")
    if teacher.denoiser is None or student.denoiser is None:
        empty = root if teacher.denoiser is None else source
        raise InvalidArgument(f"{empty} has no denoiser: a student needs a teacher model and a "
                              "`latentkit distill` folder")  # fmt: skip
    if to_dict(student.denoiser.config) != to_dict(teacher.denoiser.config):
        raise InvalidArgument(f"{source}'s denoiser has another architecture than {root}'s: "
                              "attach a student distilled from this model")  # fmt: skip
    mine, theirs = teacher.codec.state_dict(), student.codec.state_dict()
    if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k]) for k in mine):
        raise InvalidArgument(f"{source} was distilled on another codec than {root}'s: attach a "
                              "student distilled from this model")  # fmt: skip
    manifest = read_manifest(root)
    info = {"sampling": student.sampling, "training": student.training.get("denoiser", {})}
    manifest["student"] = student_entry(student.denoiser, info, root, _stored_dtype(root))
    return _write_manifest(root, manifest)


def _stored_dtype(root: Path) -> torch.dtype:
    from safetensors import safe_open

    with safe_open(root / DENOISER_DIR / WEIGHTS, "pt") as f:
        stored = f.get_slice(next(iter(f.keys()))).get_dtype()
    return {"F16": torch.float16, "BF16": torch.bfloat16}.get(stored, torch.float32)


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


def is_bundle(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


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
    if manifest.get("kind", "image") not in KINDS:
        raise ModelFileError(f"{manifest_path} names an unknown model kind {manifest['kind']!r}")
    return manifest


def load_bundle(path: str | Path, kind: str | None = None, fast: bool = False) -> Bundle:
    """Load one of our folders; `kind` ("image" or "video") refuses the other kind by name.
    `fast` returns the model with its distilled student as the denoiser, at the student's
    sampling defaults (`--fast`)."""
    root = Path(path)
    manifest = read_manifest(root)
    found = manifest.get("kind", "image")
    if kind is not None and found != kind:
        raise ModelFileError(f"{root} is {'an' if found == 'image' else 'a'} {found} model, not "
                             f"{'an' if kind == 'image' else 'a'} {kind} model")  # fmt: skip
    spec = KINDS[found]
    with reading_model_files(root):
        entry = manifest["codec"]
        codec = spec.make_codec(from_dict(spec.codec_config, entry["config"]))
        codec.vae.load_state_dict(_load_weights(root, entry, f"{found} codec"))
        for stat in spec.codec_stats:
            getattr(codec, stat).copy_(torch.tensor(entry[stat]))
        denoiser = _load_network(spec, manifest, "denoiser", codec, root)
        student = _load_network(spec, manifest, "student", codec, root)
        student_info = {}
        if student is not None:
            entry = manifest["student"]
            student_info = {"sampling": entry.get("sampling") or {},
                            "training": entry.get("training") or {}}  # fmt: skip
        text = from_dict(TextConfig, manifest["text_encoder"]["config"])
    bundle = Bundle(
        codec=codec.eval(),
        text=text,
        denoiser=denoiser,
        kind=found,
        name=manifest.get("name", ""),
        sampling=manifest.get("sampling") or {},
        training=manifest.get("training") or {},
        model_id=model_id_of(manifest, found if found != "image" else "model"),
        student=student,
        student_info=student_info,
    )
    return fast_variant(bundle, manifest, root) if fast else bundle


def _load_network(spec: Kind, manifest: dict[str, Any], part: str, codec: Any, root: Path) -> Any:
    """The manifest's `part` ("denoiser" or "student"), or None when the folder has none."""
    entry = manifest.get(part)
    if not entry:
        return None
    network = spec.make_denoiser(from_dict(spec.denoiser_config, entry["config"]), codec)
    network.net.load_state_dict(_load_weights(root, entry, f"{spec.name} {part}"))
    return network.eval()


def fast_variant(bundle: Bundle, manifest: dict[str, Any], root: Path) -> Bundle:
    """The model as `--fast` runs it: the student in the teacher's place, its own defaults."""
    if bundle.student is None:
        raise InvalidArgument(
            f"{root} has no distilled student for --fast: make one with `latentkit distill "
            f"--model {root} --out DIR --attach`, or drop --fast"
        )
    return replace(
        bundle,
        denoiser=bundle.student,
        sampling=student_sampling(bundle),
        model_id=fast_model_id(manifest),
        student=None,
        student_info={},
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


def student_sampling(bundle: Bundle) -> dict[str, Any]:
    """The settings `--fast` samples at: the teacher's, overridden by the student's own."""
    return {**bundle.sampling, **bundle.student_info.get("sampling", {})}


def fast_model_id(manifest: dict[str, Any]) -> str:
    """The id of a model's `--fast` variant: its name with "-fast", hashed over the codec and
    the student, so it never collides with the teacher's."""
    return model_id_of({**manifest, "name": f"{manifest.get('name', '')}-fast"}, "model", "student")


def folder_fast_model_id(root: Path) -> str | None:
    """The `--fast` id of a latentkit image folder that carries a student, from its manifest
    alone (a server lists it without loading anything); None for any other model."""
    if not is_bundle(root):
        return None
    try:
        manifest = read_manifest(root)
    except ModelFileError:
        return None
    if manifest.get("kind", "image") != "image" or not manifest.get("student"):
        return None
    return fast_model_id(manifest)


def model_id_of(manifest: dict[str, Any], default_name: str, network: str = "denoiser") -> str:
    """name@12 hex digits of the weights' checksums: changes whenever any weight does.
    `network` is the manifest entry that samples: "student" for `--fast`."""
    parts = [manifest["codec"]["sha256"]]
    if manifest.get(network):
        parts.append(manifest[network]["sha256"])
    short = hashlib.sha256("".join(parts).encode()).hexdigest()[:12]
    return f"{manifest.get('name', default_name)}@{short}"


def _load_weights(root: Path, entry: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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


def components_of(bundle: Bundle, source: Path | None = None) -> Components:
    """Our bundle behind the family-neutral seam."""
    from latentkit.models.lora import DenoiserLoras
    from latentkit.models.text import load_text_encoder

    spec = KINDS[bundle.kind]
    known = {k: v for k, v in bundle.sampling.items() if k in Defaults.__dataclass_fields__}
    defaults = Defaults(**{**vars(spec.defaults), **known})
    adapters = None
    if bundle.denoiser is not None and bundle.kind == "image":
        adapters = DenoiserLoras(bundle.denoiser, bundle.model_id)
    return Components(
        family="latentkit",
        title=f"latentkit {bundle.kind} model",
        codec=bundle.codec,
        text=load_text_encoder(bundle.text),
        network=bundle.denoiser,
        schedule=FlowSchedule(),
        defaults=defaults,
        name=bundle.name,
        model_id=bundle.model_id or bundle.name,
        source=source,
        description=describe(bundle),
        adapters=adapters,
        bundle=bundle,
    )


def load_components(path: str | Path, fast: bool = False) -> Components:
    return components_of(load_bundle(path, fast=fast), Path(path))


def describe(bundle: Bundle) -> list[tuple[str, str]]:
    """`latentkit info` rows: what the parts are, in words, and how they were trained."""
    codec, c = bundle.codec, bundle.codec.config
    side = c.image_size // codec.spatial_factor
    rows = [("family", f"latentkit {bundle.kind} model (latentkit bundle folder)")]
    if bundle.kind == "video":
        latent_frames = c.latent_frames(c.frames)
        shape = f"{c.frames} frames of {c.image_size}px -> {latent_frames}x{side}x{side}"
        values = 3 * c.frames * c.image_size**2 / (latent_frames * side * side)
        what = f"causal 3D KL autoencoder, {codec.spatial_factor}x in space, "
        what += f"{codec.time_factor}x in time"
    else:
        shape = f"{c.image_size}px -> {side}x{side}"
        values = 3 * codec.spatial_factor**2
        what = f"KL autoencoder f{codec.spatial_factor}"
    rows.append(("codec", f"{what}, {codec.latent_channels} latent channels, {shape}x"
                 f"{codec.latent_channels} ({values / codec.latent_channels:.0f}x fewer values), "
                 f"{_params(codec.vae)}"))  # fmt: skip
    rows.append(("latents", f"shift {_fmt(codec.latent_shift)} scale {_fmt(codec.latent_scale)}"))
    t = bundle.text
    rows.append(("text", f"{t.name} ({t.dim}-d tokens, window {t.max_tokens})"))
    if bundle.denoiser is None:
        rows.append(("network", "none (codec-only bundle: encode/decode only)"))
    else:
        d = bundle.denoiser.config
        blocks = "LTX-Video" if bundle.kind == "video" else "PixArt"
        patch = "" if bundle.kind == "video" else f", patch {d.patch_size}"
        rows.append(("network", f"diffusion transformer ({blocks} blocks), {d.layers} layers x "
                     f"{d.width} wide{patch}, {_params(bundle.denoiser)}; predicts flow "
                     "velocity"))  # fmt: skip
    if bundle.student is not None:
        sampling = bundle.student_info.get("sampling", {})
        rows.append(("student", f"distilled to {sampling.get('steps')} steps at cfg "
                     f"{sampling.get('cfg')} (--fast), {_params(bundle.student)}"))  # fmt: skip
    for kind, prov in bundle.training.items():
        rows.append(("trained", _provenance(kind, prov)))
    return rows


def _provenance(kind: str, prov: Any) -> str:
    if isinstance(prov, list):
        return f"{len(prov)} {kind} recorded (see `latentkit info --json`)"
    if not isinstance(prov, dict):
        return f"{kind}: {prov}"
    return (
        f"{kind}: {prov.get('steps')} steps, {prov.get('seconds')} s on {prov.get('device')}, "
        f"data {prov.get('data')} ({prov.get('images')} images), final loss "
        f"{prov.get('final_loss')}"
    )


def _params(module: nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M params"


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in t.tolist()) + "]"
