"""Training on tiny models: the loss falls, resume equals an unbroken run, checkpoints are safe."""

import json
from pathlib import Path

import pytest
import torch

from latentkit.cli import main
from latentkit.errors import InvalidArgument
from latentkit.families.bundle import load_bundle
from latentkit.train.commands import train_denoiser, train_vae
from latentkit.train.loop import TrainConfig

TINY = {"size": 16, "factor": 4, "latent_channels": 4, "preset_name": "tiny"}


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 30, "batch_size": 8, "lr": 2e-3, "warmup": 5,
                          "checkpoint_every": 10, "ema_decay": 0.9, **kw})  # fmt: skip


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_vae_loss_falls_and_bundle_has_unit_variance_latents(
    image_folder: Path, tmp_path: Path
) -> None:
    path = train_vae(str(image_folder), tmp_path / "vae", cfg(steps=60), **TINY)
    state = json.loads((path / "checkpoint" / "checkpoint.json").read_text())
    losses = state["losses"]
    assert mean(losses[-10:]) < 0.6 * mean(losses[:5])
    bundle = load_bundle(path)
    assert bundle.denoiser is None
    assert bundle.training["codec"]["steps"] == 60
    # Latent statistics were measured, not left at their defaults.
    assert not torch.equal(bundle.codec.latent_scale, torch.ones(4))


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path_factory.mktemp("data"))
    return folder, train_vae(
        str(folder), tmp_path_factory.mktemp("vae") / "vae", cfg(steps=20), **TINY
    )


def test_denoiser_loss_falls_and_model_generates(trained_vae, tmp_path: Path) -> None:
    from latentkit.pipeline import Pipeline

    folder, vae = trained_vae
    path = train_denoiser(vae, str(folder), tmp_path / "den", cfg(steps=60), preset_name="tiny")
    losses = json.loads((path / "checkpoint" / "checkpoint.json").read_text())["losses"]
    assert mean(losses[-10:]) < 0.8 * mean(losses[:5])
    pipe = Pipeline.load(path, device="cpu")
    assert pipe.components.bundle.training["denoiser"]["steps"] == 60
    assert "codec" in pipe.components.bundle.training
    assert pipe.generate("a square number 1", seed=0, steps=2).images[0].size == (16, 16)


def test_resume_equals_uninterrupted(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    whole = train_denoiser(vae, str(folder), tmp_path / "whole", cfg(steps=20), preset_name="tiny")
    part = tmp_path / "part"
    train_denoiser(vae, str(folder), part, cfg(steps=10), preset_name="tiny")
    halfway = load_bundle(part).denoiser.state_dict()
    resumed = train_denoiser(vae, str(folder), part, cfg(steps=20), preset_name="tiny", resume=True)
    la = json.loads((whole / "checkpoint" / "checkpoint.json").read_text())["losses"]
    lb = json.loads((resumed / "checkpoint" / "checkpoint.json").read_text())["losses"]
    # Same batches, noise, times and learning rates step for step: the same loss curve.
    assert la == pytest.approx(lb, rel=1e-6)
    a, b = load_bundle(whole).denoiser.state_dict(), load_bundle(resumed).denoiser.state_dict()
    # Weights agree to float rounding, which Adam's normalised step can lift to ~1e-5 on
    # parameters with near-zero gradients: require the gap to be under 1% of what ten steps move.
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    ten_steps = max((a[k] - halfway[k]).abs().max().item() for k in a)
    assert gap < 0.01 * ten_steps, (gap, ten_steps)


def test_existing_checkpoint_needs_resume(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    train_denoiser(vae, str(folder), tmp_path / "d", cfg(steps=2), preset_name="tiny")
    with pytest.raises(InvalidArgument, match="--resume"):
        train_denoiser(vae, str(folder), tmp_path / "d", cfg(steps=4), preset_name="tiny")


def test_minutes_budget_stops_early(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    path = train_denoiser(vae, str(folder), tmp_path / "d", cfg(steps=10_000, minutes=0.0),
                          preset_name="tiny")  # fmt: skip
    assert load_bundle(path).training["denoiser"]["steps"] == 0


def test_interrupted_checkpoint_write_keeps_the_previous_one(
    trained_vae, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import latentkit.train.loop as loop

    folder, vae = trained_vae
    out = tmp_path / "d"
    train_denoiser(vae, str(folder), out, cfg(steps=10), preset_name="tiny")
    before = (out / "checkpoint" / "checkpoint.json").read_text()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop, "atomic_save_tensors", disk_full)
    with pytest.raises(OSError, match="No space"):
        train_denoiser(vae, str(folder), out, cfg(steps=20), preset_name="tiny", resume=True)
    assert (out / "checkpoint" / "checkpoint.json").read_text() == before
    monkeypatch.undo()
    resumed = train_denoiser(vae, str(folder), out, cfg(steps=20), preset_name="tiny", resume=True)
    assert load_bundle(resumed).training["denoiser"]["steps"] == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "steps must be at least 1"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--factor", "3"], "codec factor must be one of"),
        (["--preset", "huge"], "unknown codec preset"),
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
    ],
)
def test_bad_training_input(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code = main(["train", "vae", "--out", str(tmp_path / "o"), "--size", "16", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_empty_data_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["train", "vae", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "empty")])
    assert code == 2 and "no images" in capsys.readouterr().err.lower()


def test_init_starts_from_the_given_denoiser(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    first = train_denoiser(vae, str(folder), tmp_path / "a", cfg(steps=20), preset_name="tiny")
    # lr 1e-12 leaves the weights where they start: equal to `first`, not to a fresh init.
    same = train_denoiser(vae, str(folder), tmp_path / "b", cfg(steps=1, lr=1e-12, ema_decay=0.0),
                          preset_name="tiny", init=first)  # fmt: skip
    a, b = load_bundle(first).denoiser.state_dict(), load_bundle(same).denoiser.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    info = load_bundle(same).training["denoiser"]["init"]
    assert info["training"]["steps"] == 20 and len(info["sha256"]) == 64


def test_init_with_another_preset_is_refused(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    first = train_denoiser(vae, str(folder), tmp_path / "a", cfg(steps=1), preset_name="tiny")
    with pytest.raises(InvalidArgument, match=r"--init .* has denoiser config"):
        train_denoiser(vae, str(folder), tmp_path / "b", cfg(steps=1), preset_name="small",
                       init=first)  # fmt: skip


def test_rich_captions_need_openmoji(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    with pytest.raises(InvalidArgument, match="--captions rich needs --data openmoji"):
        train_denoiser(vae, str(folder), tmp_path / "d", cfg(steps=1), preset_name="tiny",
                       captions="rich")  # fmt: skip
    with pytest.raises(InvalidArgument, match="--captions must be one of name, rich"):
        train_denoiser(vae, str(folder), tmp_path / "d", cfg(steps=1), preset_name="tiny",
                       captions="fancy")  # fmt: skip


def test_a_pooled_token_denoiser_reads_the_sentence_vector() -> None:
    from latentkit.config import DenoiserConfig
    from latentkit.models.components import PromptEmbeds
    from latentkit.models.denoiser import Denoiser

    torch.manual_seed(0)
    config = DenoiserConfig(layers=2, heads=2, head_dim=16, latent_size=4, pooled_token=True)
    net = Denoiser(config).eval()
    for p in net.parameters():  # PixArt zero-initialises its output: randomise it
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.02)
    x, t = torch.randn(2, 4, 4, 4), torch.tensor([0.3, 0.8])
    tokens, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.long)
    pooled = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    with torch.no_grad():
        one = net(x, t, tokens, mask, pooled)
        other = net(x, t, tokens, mask, pooled.flip(0))
        bound = net.bind(PromptEmbeds(tokens, mask, pooled))(x, t)
    assert not torch.allclose(one, other, atol=1e-6)  # the sentence vector changes the answer
    assert torch.allclose(bound, one, atol=1e-5)  # the sampling path reads it the same way
    with pytest.raises(ValueError, match="pooled"):
        net(x, t, tokens, mask)


def test_pooled_token_training_starts_from_a_model_without_it(trained_vae, tmp_path: Path) -> None:
    from latentkit.pipeline import Pipeline

    folder, vae = trained_vae
    plain = train_denoiser(vae, str(folder), tmp_path / "plain", cfg(steps=4), preset_name="tiny")
    path = train_denoiser(vae, str(folder), tmp_path / "pooled", cfg(steps=40), preset_name="tiny",
                          init=plain, pooled_token=True)  # fmt: skip
    losses = json.loads((path / "checkpoint" / "checkpoint.json").read_text())["losses"]
    assert mean(losses[-10:]) < mean(losses[:5])
    assert load_bundle(path).denoiser.config.pooled_token
    assert not load_bundle(plain).denoiser.config.pooled_token  # older folders read as before
    assert Pipeline.load(path, device="cpu").generate("a square", seed=0, steps=2).images
    with pytest.raises(InvalidArgument, match="add --pooled-token"):  # not a state_dict traceback
        train_denoiser(vae, str(folder), tmp_path / "again", cfg(steps=1), preset_name="tiny",
                       init=path)  # fmt: skip
    assert not (tmp_path / "again" / "checkpoint").exists()


def test_init_from_a_codec_with_other_latent_channels_keeps_the_transformer_body(
    tiny_model_dir: Path,
) -> None:
    from dataclasses import replace

    from latentkit.train.commands import LATENT_IO, initial_denoiser

    start = load_bundle(tiny_model_dir).denoiser.state_dict()
    config = replace(load_bundle(tiny_model_dir).denoiser.config, latent_channels=8)
    net = initial_denoiser(tiny_model_dir, config).state_dict()
    assert net["net.proj_out.weight"].shape[0] == 8
    assert net["net.pos_embed.proj.weight"].shape[1] == 8
    body = [k for k in start if k not in LATENT_IO]
    assert len(body) == len(start) - 3
    assert all(torch.equal(net[k], start[k]) for k in body)
    with pytest.raises(InvalidArgument, match="has denoiser config"):
        initial_denoiser(tiny_model_dir, replace(config, layers=3))


def test_vae_init_continues_from_committed_weights(trained_vae, tmp_path: Path) -> None:
    folder, vae = trained_vae
    # lr 1e-12 leaves the weights where they start: equal to `vae`, not to a fresh init.
    same = train_vae(str(folder), tmp_path / "b", cfg(steps=1, lr=1e-12, ema_decay=0.0),
                     init=vae, **TINY)  # fmt: skip
    a, b = load_bundle(vae).codec.state_dict(), load_bundle(same).codec.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a if "latent" not in k) < 1e-6
    info = load_bundle(same).training["codec"]["init"]
    assert info["training"]["steps"] == 20 and len(info["sha256"]) == 64
    with pytest.raises(InvalidArgument, match=r"--init .* has codec config"):
        train_vae(str(folder), tmp_path / "c", cfg(steps=1), init=vae,
                  **{**TINY, "latent_channels": 8})  # fmt: skip


def test_vae_decoder_only_keeps_the_encoder_and_latent_statistics(
    trained_vae, tmp_path: Path
) -> None:
    folder, vae = trained_vae
    tuned = train_vae(str(folder), tmp_path / "dec", cfg(steps=5, lr=1e-2), init=vae,
                      decoder_only=True, **TINY)  # fmt: skip
    a, b = load_bundle(vae).codec.state_dict(), load_bundle(tuned).codec.state_dict()
    encoder = [k for k in a if ".encoder." in k or ("quant_conv" in k and "post_" not in k)]
    decoder = [k for k in a if ".decoder." in k]
    assert encoder and decoder
    assert all(torch.equal(a[k], b[k]) for k in encoder)
    assert all(torch.equal(a[k], b[k]) for k in ("latent_shift", "latent_scale"))
    assert any(not torch.equal(a[k], b[k]) for k in decoder)
    assert load_bundle(tuned).training["codec"]["decoder_only"] is True
    with pytest.raises(InvalidArgument, match=r"--decoder-only .* --init"):
        train_vae(str(folder), tmp_path / "e", cfg(steps=1), decoder_only=True, **TINY)


def test_a_decoder_fine_tune_swaps_in_and_any_other_codec_is_refused(
    trained_vae, tmp_path: Path
) -> None:
    from latentkit.families.bundle import with_decoder_of

    folder, vae = trained_vae
    tuned = train_vae(str(folder), tmp_path / "dec", cfg(steps=3, lr=1e-2), init=vae,
                      decoder_only=True, **TINY)  # fmt: skip
    swapped = with_decoder_of(load_bundle(vae), load_bundle(tuned))
    assert torch.equal(
        swapped.codec.vae.decoder.conv_out.weight,
        load_bundle(tuned).codec.vae.decoder.conv_out.weight,
    )
    assert swapped.training["codec"]["decoder_only"] is True
    retrained = train_vae(str(folder), tmp_path / "all", cfg(steps=3, lr=1e-2), init=vae, **TINY)
    with pytest.raises(InvalidArgument, match="another encoder or latent statistics"):
        with_decoder_of(load_bundle(vae), load_bundle(retrained))
