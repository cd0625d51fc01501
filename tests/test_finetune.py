"""LoRA, textual inversion and fine-tuning on tiny models: exact properties, not just smoke."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.cli import main
from latentkit.config import DenoiserConfig
from latentkit.errors import InvalidArgument
from latentkit.families.bundle import save_bundle
from latentkit.models.denoiser import Denoiser
from latentkit.models.lora import LoraSpec, add_lora, read_lora, save_lora
from latentkit.pipeline import Pipeline
from latentkit.train.loop import TrainConfig
from tests.conftest import tiny_bundle

PROMPT = "a square number 1"


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 30, "batch_size": 8, "lr": 5e-3, "warmup": 2,
                          "checkpoint_every": 10, "ema_decay": 0.5, **kw})  # fmt: skip


def mixed_folder(root: Path, n: int = 9, corrupt: int = 1) -> Path:
    """Images of three aspect ratios, some captioned, plus `corrupt` unreadable files."""
    rng = np.random.default_rng(1)
    folder = root / "mixed"
    folder.mkdir()
    sizes = [(20, 20), (30, 16), (14, 28)]
    for i in range(n):
        w, h = sizes[i % 3]
        arr = np.full((h, w, 3), 255, np.uint8)
        arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = rng.integers(0, 80, 3)
        Image.fromarray(arr).save(folder / f"img{i}.png")
        if i % 2:
            (folder / f"img{i}.txt").write_text("a dark square")
    for j in range(corrupt):
        (folder / f"bad{j}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def random_lora(model_dir: Path, path: Path, rank: int = 4) -> Path:
    """A LoRA with non-zero B (a fresh one is exactly zero), saved the normal way."""
    pipe = Pipeline.load(model_dir, device="cpu")
    den = pipe.components.bundle.denoiser
    add_lora(den, LoraSpec(rank=rank))
    torch.manual_seed(3)
    for name, p in den.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)
    return save_lora(den, path, LoraSpec(rank=rank), pipe.model_id)


@pytest.fixture(scope="module")
def lora_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "style.safetensors")


def latents(pipe: Pipeline) -> torch.Tensor:
    return pipe.generate(PROMPT, seed=5, steps=3).latents


# -- LoRA ---------------------------------------------------------------------------------------


def test_lora_weight_zero_is_the_base_model_exactly(tiny_model_dir: Path, lora_file: Path) -> None:
    base = latents(Pipeline.load(tiny_model_dir, device="cpu"))
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    pipe.load_lora(lora_file, 0.0)
    assert torch.equal(latents(pipe), base)
    pipe.set_lora_weights({"style": 0.8})
    assert (latents(pipe) - base).abs().max() > 1e-3


def test_merge_equals_adapter_and_unmerge_restores(tiny_model_dir: Path, lora_file: Path,
                                                   tmp_path: Path) -> None:  # fmt: skip
    base_state = Pipeline.load(tiny_model_dir, device="cpu").network.net.state_dict()
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    pipe.load_lora(lora_file, 0.7)
    adapted = latents(pipe)
    pipe.merge_loras()
    torch.testing.assert_close(latents(pipe), adapted, atol=1e-5, rtol=0)
    pipe.unmerge_loras()
    state = {k.replace(".base_layer.", "."): v for k, v in pipe.network.net.state_dict().items()
             if "lora_" not in k}  # fmt: skip
    for key, value in base_state.items():
        torch.testing.assert_close(state[key], value, atol=1e-6, rtol=0)
    # `lora merge` writes a plain bundle whose output equals the adapter's.
    assert main(["lora", "merge", "--model", str(tiny_model_dir), "--lora",
                 f"{lora_file}:0.7", "--out", str(tmp_path / "merged")]) == 0  # fmt: skip
    merged = Pipeline.load(tmp_path / "merged", device="cpu")
    torch.testing.assert_close(latents(merged), adapted, atol=1e-5, rtol=0)


def test_two_loras_with_weights_add_up(tiny_model_dir: Path, lora_file: Path,
                                       tmp_path: Path) -> None:  # fmt: skip
    other = random_lora(tiny_model_dir, tmp_path / "other.safetensors", rank=2)
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    pipe.load_lora(lora_file, 0.5)
    pipe.load_lora(other, -0.3)
    assert pipe.loras == {"style": 0.5, "other": -0.3}
    from latentkit.models.lora import plain_state_dict

    merged = plain_state_dict(pipe.network)
    a, b = read_lora(lora_file), read_lora(other)
    key = "transformer_blocks.0.attn1.to_q"
    base = Pipeline.load(tiny_model_dir, device="cpu").network.net.state_dict()[key + ".weight"]
    delta = sum(w * (f.alpha / f.rank) * f.tensors[f"transformer.{key}.lora_B.weight"]
                @ f.tensors[f"transformer.{key}.lora_A.weight"]
                for w, f in ((0.5, a), (-0.3, b)))  # fmt: skip
    torch.testing.assert_close(merged[key + ".weight"], base + delta, atol=1e-6, rtol=0)


def test_lora_file_follows_diffusers_convention(tiny_model_dir: Path, lora_file: Path) -> None:
    """diffusers' own loader (PeftAdapterMixin.load_lora_adapter) reads the file and agrees."""
    from diffusers import PixArtTransformer2DModel
    from diffusers.loaders.peft import PeftAdapterMixin
    from safetensors import safe_open

    with safe_open(lora_file, "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    assert json.loads(meta["lora_adapter_metadata"])["r"] == 4
    info = json.loads(meta["latentkit"])
    assert info["rank"] == 4 and info["base_model"].startswith("tiny@")

    class PixArtWithAdapters(PeftAdapterMixin, PixArtTransformer2DModel):
        pass

    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    net = PixArtWithAdapters.from_config(pipe.network.net.config)
    net.load_state_dict(pipe.network.net.state_dict())
    net.load_lora_adapter(str(lora_file), prefix="transformer", adapter_name="style")
    ours = Pipeline.load(tiny_model_dir, device="cpu")
    ours.load_lora(lora_file, 1.0)
    x, t = torch.randn(2, 4, 4, 4), torch.tensor([0.3, 0.8])
    cond = pipe.encode_prompt([PROMPT, ""])
    with torch.no_grad():
        pipe.network.net = net
        theirs = pipe.network(x, t, cond.tokens, cond.mask)
        mine = ours.network(x, t, cond.tokens, cond.mask)
    torch.testing.assert_close(theirs, mine, atol=1e-5, rtol=0)


def test_lora_of_another_model_names_the_layer(lora_file: Path, tmp_path: Path, capsys) -> None:
    bundle = tiny_bundle()
    bundle.denoiser = Denoiser(DenoiserConfig(layers=2, heads=2, head_dim=8, latent_size=4))
    other = save_bundle(bundle, tmp_path / "other")
    pipe = Pipeline.load(other, device="cpu")
    with pytest.raises(InvalidArgument, match=r"layer 'transformer_blocks\.0\.attn1\.to_k'"):
        pipe.load_lora(lora_file)
    code = main(["generate", "x", "--model", str(other), "--lora", str(lora_file),
                 "--out", str(tmp_path / "x.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "another model" in err and len(err.strip().splitlines()) == 1


def test_train_lora_changes_only_lora_and_loss_falls(tiny_model_dir: Path, tmp_path: Path) -> None:
    from latentkit.train.finetune import train_lora

    folder = mixed_folder(tmp_path)
    out = tmp_path / "style.safetensors"
    with pytest.warns(UserWarning, match="skipped 1 of 10"):
        train_lora(str(folder), out, LoraSpec(rank=4), cfg(steps=40), model=tiny_model_dir)
    state = json.loads((tmp_path / "style.run" / "checkpoint" / "checkpoint.json").read_text())
    losses = state["losses"]
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    from safetensors.torch import load_file

    ckpt = load_file(tmp_path / "style.run" / "checkpoint" / state["file"])
    base = Pipeline.load(tiny_model_dir, device="cpu").network.state_dict()
    for key, value in ckpt.items():
        if key.startswith("model.") and "lora_" not in key:
            name = key.removeprefix("model.").replace(".base_layer.", ".")
            assert torch.equal(value, base[name]), key
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in ckpt.items())
    assert out.stat().st_size < 200_000
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    pipe.load_lora(out, 1.0)
    assert pipe.generate("a dark square", seed=0, steps=2, width=24, height=12).images[0].size == (
        24, 12)  # fmt: skip


@pytest.mark.parametrize("rank", ["0", "-2"])
def test_bad_rank_is_one_line_exit_2(tmp_path: Path, capsys, rank: str) -> None:
    folder = mixed_folder(tmp_path, n=3, corrupt=0)
    code = main(["train", "lora", "--data", str(folder), "--rank", rank, "--steps", "1",
                 "--out", str(tmp_path / "x.safetensors")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"rank must be at least 1, got {rank}" in err
    assert len(err.strip().splitlines()) == 1


def test_empty_and_corrupt_folders_are_clear_errors(tiny_model_dir: Path, tmp_path: Path,
                                                    capsys) -> None:  # fmt: skip
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"b{i}.png").write_bytes(b"garbage")
    for folder, message in ((tmp_path / "empty", "contains no images"),
                            (bad, "none of the 3 images")):  # fmt: skip
        code = main(["train", "lora", "--data", str(folder), "--model", str(tiny_model_dir),
                     "--steps", "1", "--out", str(tmp_path / "x.safetensors")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# -- textual inversion --------------------------------------------------------------------------


def test_token_training_changes_only_the_new_row(tiny_model_dir: Path, tmp_path: Path) -> None:
    from latentkit.models.text import load_text_encoder
    from latentkit.models.tokens import encoder_fingerprint, read_tokens
    from latentkit.train.finetune import train_token

    folder = mixed_folder(tmp_path, n=6, corrupt=0)
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    encoder = load_text_encoder(pipe.components.bundle.text)
    table = encoder.model.get_input_embeddings().weight.detach().clone()
    fingerprint = encoder_fingerprint(encoder)
    out = tmp_path / "cat.safetensors"
    train_token(str(folder), ["<my-sq>"], ["square"], out, cfg(steps=15, lr=1e-2),
                model=tiny_model_dir)  # fmt: skip
    # The shared table is bit-identical; the learned row moved away from its init word.
    assert torch.equal(encoder.model.get_input_embeddings().weight, table)
    assert encoder_fingerprint(encoder) == fingerprint
    learned = read_tokens(out)
    assert learned.tokens == ("<my-sq>",) and learned.vectors.shape == (1, 384)
    init = table[encoder.tokenizer("square", add_special_tokens=False)["input_ids"]].mean(0)
    assert (learned.vectors[0] - init).abs().max() > 1e-3
    assert out.stat().st_size < 4096
    # Usable in prompts, alone and with a LoRA; other prompts are untouched.
    plain = latents(pipe)
    pipe.load_tokens(out)
    assert torch.equal(latents(pipe), plain)
    with_token = pipe.generate("a <my-sq> number 1", seed=5, steps=3).latents
    assert not torch.equal(with_token, plain)
    code = main(["generate", "a <my-sq>", "--model", str(tiny_model_dir), "--token-file",
                 str(out), "--lora", f"{random_lora(tiny_model_dir, tmp_path / 'l.safetensors')}"
                 ":0.5", "--steps", "2", "--out", str(tmp_path / "g.png")])  # fmt: skip
    assert code == 0 and (tmp_path / "g.png").is_file()


def test_token_errors(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from latentkit.models.text import load_text_encoder
    from latentkit.models.tokens import save_tokens

    folder = mixed_folder(tmp_path, n=3, corrupt=0)
    code = main(["train", "token", "--data", str(folder), "--token", "cat", "--init-word",
                 "cat", "--model", str(tiny_model_dir), "--out",
                 str(tmp_path / "t.safetensors")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "'cat' is already in the text encoder's vocabulary" in err
    # A token file whose fingerprint belongs to another encoder.
    encoder = load_text_encoder(Pipeline.load(tiny_model_dir, device="cpu").components.bundle.text)
    path = save_tokens(tmp_path / "x.safetensors", ["<x>"], torch.zeros(1, 384), encoder)
    from safetensors.torch import load_file, save_file

    meta_info = {"kind": "latentkit-tokens", "tokens": ["<x>"], "text_encoder": "other",
                 "encoder_fingerprint": "0123456789abcdef"}  # fmt: skip
    save_file(load_file(path), path, metadata={"latentkit": json.dumps(meta_info)})
    code = main(["generate", "<x>", "--model", str(tiny_model_dir), "--token-file", str(path),
                 "--out", str(tmp_path / "g.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "made for another text encoder" in err
    assert len(err.strip().splitlines()) == 1


# -- buckets and shards -------------------------------------------------------------------------


def test_bucket_shapes_are_multiples_of_the_cell() -> None:
    from latentkit.data.buckets import bucket_shapes, nearest_bucket

    for size, cell in ((16, 4), (32, 4), (64, 8), (256, 16)):
        shapes = bucket_shapes(size, cell)
        assert (size, size) in shapes and len(shapes) >= 5
        for w, h in shapes:
            assert w % cell == 0 and h % cell == 0
            assert 0.7 < w * h / size**2 < 1.3
        assert nearest_bucket(300, 100, shapes)[0] > nearest_bucket(300, 100, shapes)[1]
        assert nearest_bucket(100, 100, shapes) == (size, size)


def test_shards_stream_with_one_in_memory(tiny_model_dir: Path, tmp_path: Path) -> None:
    from latentkit.families.bundle import load_bundle, read_manifest
    from latentkit.train.latents import latent_cache
    from latentkit.train.loop import step_generator

    folder = mixed_folder(tmp_path, n=30, corrupt=2)
    bundle = load_bundle(tiny_model_dir)
    key = read_manifest(tiny_model_dir)["codec"]["sha256"]
    with pytest.warns(UserWarning, match="skipped 2 of 32"):
        source = latent_cache(folder, bundle.codec, key, tmp_path / "cache", torch.device("cpu"),
                              shard_size=4)  # fmt: skip
    assert len(source) == 30 and len(source.shards) >= 6
    shapes = {s.shape for s in source.shards}
    assert shapes == {(4, 4, 4), (4, 3, 6), (4, 6, 3)}  # three buckets, latent [C, h, w]
    for step in range(40):
        x, captions = source.draw(5, step_generator(0, step))
        assert x.shape[0] == 5 and len(captions) == 5 and tuple(x.shape[1:]) in shapes
        held = [v for v in vars(source).values() if isinstance(v, tuple)]
        assert len(held) <= 1  # only the current shard is in memory
    assert source.max_resident == 1 and source.loads > len(source.shards)
    # Cached: a second open reads the index, not the images.
    again = latent_cache(folder, bundle.codec, key, tmp_path / "cache", torch.device("cpu"),
                         shard_size=4)  # fmt: skip
    assert [s.file for s in again.shards] == [s.file for s in source.shards]


def test_finetune_continues_from_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from latentkit.families.bundle import load_bundle
    from latentkit.train.finetune import finetune_denoiser

    folder = mixed_folder(tmp_path, n=6, corrupt=0)
    out = finetune_denoiser(str(folder), tmp_path / "ft", cfg(steps=3, lr=1e-4),
                            model=tiny_model_dir)  # fmt: skip
    a = load_bundle(tiny_model_dir).denoiser.state_dict()
    b = load_bundle(out).denoiser.state_dict()
    moved = max((a[k] - b[k]).abs().max().item() for k in a)
    assert 0 < moved < 0.01  # a few small steps away from the base, not a fresh init
    assert load_bundle(out).training["finetune"]["base_model"].startswith("tiny@")


def test_lora_with_a_layer_this_model_lacks(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "alien.safetensors"
    save_file({"transformer.transformer_blocks.7.attn1.to_q.lora_A.weight": torch.zeros(2, 32),
               "transformer.transformer_blocks.7.attn1.to_q.lora_B.weight": torch.zeros(32, 2)},
              path)  # fmt: skip
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    with pytest.raises(InvalidArgument, match=r"layer 'transformer_blocks\.7\.attn1\.to_q' does"):
        pipe.load_lora(path)


def test_parse_lora_argument() -> None:
    from latentkit.models.lora import parse_lora_arg

    assert parse_lora_arg("style.safetensors:0.8") == (Path("style.safetensors"), 0.8)
    assert parse_lora_arg("a/b.safetensors") == (Path("a/b.safetensors"), 1.0)
    assert parse_lora_arg("x.safetensors:-0.5") == (Path("x.safetensors"), -0.5)
    with pytest.raises(InvalidArgument, match=r"FILE\.safetensors:WEIGHT"):
        parse_lora_arg("x.safetensors:strong")
    with pytest.raises(InvalidArgument, match="finite"):
        parse_lora_arg("x.safetensors:nan")
