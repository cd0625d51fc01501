"""Single .safetensors checkpoints (the AUTOMATIC1111 / ComfyUI layout) of SD 1.x, 2.x and SDXL:
detected from the header alone, loaded offline through diffusers' from_single_file with the
config skeletons and CLIP tokenizer latentkit ships, equal to the same weights as a folder."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
import torch
from family_fixtures import cached_family_folder, single_thread
from single_file_fixtures import config_skeleton, synthetic_header, to_single_file, vpred_markers

import latentkit.families.single_file as single_file
from latentkit.cli import main
from latentkit.errors import ModelFileError
from latentkit.pipeline import Pipeline

OURS = {"sd1": "sd1", "sd2v": "sd2", "sdxl": "sdxl"}


@pytest.fixture
def tiny_skeletons(tmp_path_factory, monkeypatch) -> Path:
    """Skeletons of the tiny test architectures (the shipped ones describe the real sizes)."""
    root = tmp_path_factory.getbasetemp() / "tiny-skeletons"
    for family, ours in OURS.items():
        if not (root / ours / "model_index.json").is_file():
            config_skeleton(cached_family_folder(tmp_path_factory, family), root / ours)
    monkeypatch.setattr(single_file, "SKELETONS", root)
    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    return root


def checkpoint(tmp_path_factory, family: str, **kwargs) -> Path:
    folder = cached_family_folder(tmp_path_factory, family)
    out = tmp_path_factory.mktemp("ckpt") / f"{family}.safetensors"
    return to_single_file(folder, family, out, detect_keys=True, **kwargs)


@pytest.mark.parametrize("family", list(OURS))
def test_a_single_file_generates_what_its_folder_generates(
    family, tiny_skeletons, tmp_path_factory, monkeypatch
) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    file = checkpoint(tmp_path_factory, family)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with single_thread():
        from_file = Pipeline.load(file, device="cpu")
        from_folder = Pipeline.load(cached_family_folder(tmp_path_factory, family), device="cpu")
        a = from_file.generate("a photo of a cat", "blurry", seed=2, steps=3, cfg=4.0).latents
        b = from_folder.generate("a photo of a cat", "blurry", seed=2, steps=3, cfg=4.0).latents
    assert from_file.family == OURS[family]
    assert torch.equal(a, b)
    rows = dict(from_file.components.description)
    assert rows["layout"] == "single file"
    expected = "v_prediction" if family == "sd2v" else "epsilon"
    assert from_file.network.prediction == expected and rows["prediction"].startswith(expected)


def test_prediction_evidence_order(tiny_skeletons, tmp_path_factory) -> None:
    """Flag, then a model.yaml beside the file, then v_pred/ztsnr marker keys, then family."""
    marked = checkpoint(tmp_path_factory, "sd1", markers=vpred_markers(ztsnr=True))
    pipe = Pipeline.load(marked, device="cpu")
    assert pipe.network.prediction == "v_prediction"
    why = dict(pipe.components.description)["prediction"]
    assert "marker keys (v_pred, ztsnr)" in why and "zero terminal SNR" in why
    assert pipe.components.schedule.spacing == "trailing"  # zero-SNR runs to t = 1
    assert float(pipe.times(pipe.recipe("x", steps=4))[0]) > 0.999
    flagged = Pipeline.load(marked, device="cpu", prediction="epsilon")
    assert flagged.network.prediction == "epsilon"
    assert "--prediction" in dict(flagged.components.description)["prediction"]
    marked.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "eps"\n')
    beside = Pipeline.load(marked, device="cpu")
    assert beside.network.prediction == "epsilon"


@pytest.mark.parametrize(
    ("family", "prefix", "found"),
    [
        ("sd1", None, "sd1"),
        ("sd2", None, "sd2"),
        ("sdxl", None, "sdxl"),
        ("sd3", None, "sd3"),
        ("flux-dev", None, "flux-dev"),
        ("flux-schnell", None, "flux-schnell"),
    ],
)
def test_families_are_read_from_the_header_alone(family, prefix, found) -> None:
    assert single_file.detect(synthetic_header(family), Path("x.safetensors")) == found
    if family in ("sd3", "flux-dev", "flux-schnell"):  # with or without the usual prefix
        bare = synthetic_header(family, prefix="model.diffusion_model." if "flux" in family else "")
        assert single_file.detect(bare, Path("x.safetensors")) == found


@pytest.mark.parametrize(
    ("family", "title"),
    [("sana", "Sana"), ("ltx", "LTX-Video")],
)  # fmt: skip
def test_other_families_are_named_not_misread(family, title) -> None:
    for prefix in ("", "model.diffusion_model."):
        header = synthetic_header(family, prefix=prefix)
        with pytest.raises(ModelFileError, match=f"is a {title} checkpoint; .* a diffusers folder"):
            single_file.detect(header, Path("x.safetensors"))


def write_header_only(path: Path, header: dict) -> Path:
    data = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    return path


def test_unknown_truncated_and_pickled_files_are_refused(tmp_path: Path, capsys) -> None:
    unknown = write_header_only(
        tmp_path / "mystery.safetensors",
        {"foo.weight": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}},
    )
    with pytest.raises(ModelFileError, match=r"mystery.safetensors is not a checkpoint .* e\.g\. "
                                             r"foo\.weight\)\. Supported: "):  # fmt: skip
        Pipeline.load(unknown, device="cpu")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(struct.pack("<Q", 10_000) + b'{"a":')
    with pytest.raises(ModelFileError, match=r"cut\.safetensors is truncated"):
        Pipeline.load(cut, device="cpu")
    code = main(["generate", "x", "--model", str(cut), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "cut.safetensors is truncated" in err and "Traceback" not in err
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04")
    with pytest.raises(ModelFileError, match="pickled checkpoint"):
        Pipeline.load(ckpt, device="cpu")


def test_cli_says_what_the_file_was_taken_for(tiny_skeletons, tmp_path_factory, capsys) -> None:
    file = checkpoint(tmp_path_factory, "sd2v")
    out = tmp_path_factory.mktemp("out") / "x.png"
    assert main(["generate", "a cat", "--model", str(file), "--steps", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "model: Stable Diffusion 2.x, single file, v_prediction" in err
    assert "768 px v release" in err


REAL_PARAMETERS = {  # the released models' parameter counts
    ("sd1", "unet"): 859_520_964, ("sd1", "vae"): 83_653_863, ("sd1", "text_encoder"): 123_060_480,
    ("sd2", "unet"): 865_910_724, ("sd2", "text_encoder"): 340_387_840,
    ("sdxl", "unet"): 2_567_463_684, ("sdxl", "text_encoder_2"): 694_659_840,
    ("sd3", "transformer"): 2_028_328_000, ("sd3", "text_encoder"): 123_650_304,
    ("sd3", "text_encoder_2"): 694_659_840,
}  # fmt: skip


def test_shipped_skeletons_describe_the_real_architectures() -> None:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    for (family, part), count in REAL_PARAMETERS.items():
        config = json.loads((single_file.SKELETONS / family / part / "config.json").read_text())
        with init_empty_weights():
            if "_class_name" in config:
                model = getattr(diffusers, config["_class_name"]).from_config(config)
            else:
                cls = getattr(transformers, config["architectures"][0])
                model = cls(transformers.CLIPTextConfig(**config))
        assert sum(p.numel() for p in model.parameters()) == count, (family, part)


def test_the_shipped_clip_tokenizer_is_clips(tmp_path: Path, monkeypatch) -> None:
    from transformers import CLIPTokenizer

    monkeypatch.setenv("LATENTKIT_CACHE", str(tmp_path))
    folder = single_file.skeleton("sdxl")
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        tokenizer = CLIPTokenizer.from_pretrained(folder / name, local_files_only=True)
        assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
        assert tokenizer.pad_token == pad
        assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert single_file.skeleton("sdxl") == folder  # made once
