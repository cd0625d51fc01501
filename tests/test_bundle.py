import json
import shutil
from pathlib import Path

import pytest
import torch

from latentkit.errors import ModelFileError
from latentkit.families.bundle import components_of, load_bundle, save_bundle
from latentkit.pipeline import Pipeline
from tests.conftest import tiny_bundle


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return module.state_dict()


def test_save_load_round_trip_is_bit_exact(tmp_path: Path) -> None:
    original = tiny_bundle()
    save_bundle(original, tmp_path / "m")
    loaded = load_bundle(tmp_path / "m")
    for a, b in ((original.codec, loaded.codec), (original.denoiser, loaded.denoiser)):
        sa, sb = state(a), state(b)
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.sampling == original.sampling
    assert loaded.model_id.startswith("tiny@")


def test_round_trip_generates_identical_pixels(tmp_path: Path) -> None:
    a = Pipeline(components_of(tiny_bundle()), device="cpu")
    b = Pipeline.load(a.save(tmp_path / "m"), device="cpu")
    ga, gb = a.generate("x", seed=4, steps=2), b.generate("x", seed=4, steps=2)
    assert torch.equal(ga.latents, gb.latents)


def test_folder_matches_diffusers_layout(tiny_model_dir: Path) -> None:
    from diffusers import AutoencoderKL, PixArtTransformer2DModel

    vae = AutoencoderKL.from_pretrained(tiny_model_dir / "vae")
    net = PixArtTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    ours = load_bundle(tiny_model_dir)
    assert torch.equal(vae.decoder.conv_out.weight, ours.codec.vae.decoder.conv_out.weight)
    assert torch.equal(net.proj_out.weight, ours.denoiser.net.proj_out.weight)


def test_fp16_save_halves_the_size_and_loads_as_fp32(tmp_path: Path) -> None:
    b = tiny_bundle()
    full = save_bundle(b, tmp_path / "full")
    half = save_bundle(b, tmp_path / "half", dtype=torch.float16)
    size = lambda p: (p / "transformer/diffusion_pytorch_model.safetensors").stat().st_size  # noqa: E731
    assert size(half) < 0.6 * size(full)
    loaded = load_bundle(half)
    assert next(loaded.denoiser.parameters()).dtype == torch.float32


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_missing_manifest(model_copy: Path) -> None:
    (model_copy / "latentkit.json").unlink()
    with pytest.raises(ModelFileError, match=r"latentkit\.json is missing"):
        load_bundle(model_copy)


def test_missing_weights_named(model_copy: Path) -> None:
    (model_copy / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"denoiser weights .*transformer.* are missing"):
        load_bundle(model_copy)


def test_truncated_weights_named(model_copy: Path) -> None:
    path = model_copy / "vae" / "diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match=r"codec weights .*vae.* truncated"):
        load_bundle(model_copy)


def test_mismatched_config_named(model_copy: Path) -> None:
    manifest = json.loads((model_copy / "latentkit.json").read_text())
    manifest["denoiser"]["config"]["layers"] = 3
    (model_copy / "latentkit.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"do not match latentkit\.json"):
        load_bundle(model_copy)


def test_garbled_manifest(model_copy: Path) -> None:
    (model_copy / "latentkit.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_bundle(model_copy)


def test_newer_format_is_refused(model_copy: Path) -> None:
    manifest = json.loads((model_copy / "latentkit.json").read_text())
    manifest["format_version"] = 99
    (model_copy / "latentkit.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="upgrade latentkit"):
        load_bundle(model_copy)


def test_default_model_from_environment(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTKIT_MODEL", str(tiny_model_dir))
    assert Pipeline.load(device="cpu").model_id.startswith("tiny@")


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    import os
    import stat

    from latentkit.files import FILE_MODE, atomic_save_tensors, atomic_write_bytes

    umask = os.umask(0)
    os.umask(umask)
    atomic_write_bytes(tmp_path / "x.json", b"{}")
    atomic_save_tensors({"a": torch.zeros(1)}, tmp_path / "x.safetensors")
    for name in ("x.json", "x.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == FILE_MODE == 0o666 & ~umask


def test_image_loader_names_a_video_model_for_what_it_is(capsys) -> None:
    from latentkit.cli import main
    from latentkit.families.bundle import shipped_model

    with pytest.raises(ModelFileError, match="is a video model, not an image model"):
        load_bundle(shipped_model("video"), kind="image")
    code = main(["generate", "a cat", "--model", str(shipped_model("video")), "--out", "x.png"])
    err = capsys.readouterr().err
    assert code == 2 and "is a video model" in err and "Traceback" not in err
