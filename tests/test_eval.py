"""The evaluation network, the metrics and `latentkit eval`, on tiny models and synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentkit.cli import main
from latentkit.data.images import ImageSet
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.eval.evalnet import (
    EvalNetConfig,
    EvalNetwork,
    load_eval_network,
    save_eval_network,
    shipped_evalnet_path,
    to_network_input,
)
from latentkit.eval.evaluate import (
    PromptSet,
    Reference,
    SampleSettings,
    evaluate_codec,
    generate_for_prompts,
    markdown_report,
    score_generation,
)
from latentkit.eval.metrics import (
    frechet_distance,
    nearest_rate,
    pca_reconstruction,
    psnr,
    retrieval_accuracy,
    ssim,
)
from latentkit.eval.paraphrases import PARAPHRASES
from latentkit.eval.train_evalnet import EvalNetTask, augment, clip_loss
from tests.conftest import tiny_codec

TINY = EvalNetConfig(image_size=16, widths=(8, 16), embed_dim=16)


def random_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ---- metrics --------------------------------------------------------------------------------


def test_psnr_of_a_known_error() -> None:
    x = torch.zeros(2, 3, 8, 8)
    # An error of 0.2 on the [-1, 1] scale is 0.1 on [0, 1]: MSE 0.01, PSNR 20 dB.
    assert torch.allclose(psnr(x, x + 0.2), torch.full((2,), 20.0), atol=1e-4)


def test_ssim_is_one_for_identical_images_and_lower_with_noise() -> None:
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert (ssim(x, noisy) < 0.9).all()


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0, 0])
    # Equal-axis Gaussians: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2 = 1 + 3 * (1 - 2)^2 = 4.
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_needs_two_samples() -> None:
    with pytest.raises(InvalidArgument, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


def test_retrieval_and_nearest_rate_on_identical_features() -> None:
    features = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    assert retrieval_accuracy(features, features, np.arange(10)) == {"top1": 1.0, "top5": 1.0}
    assert nearest_rate(features, features, np.arange(10)) == 1.0
    shuffled = np.roll(np.arange(10), 1)
    assert retrieval_accuracy(features, features, shuffled)["top1"] == 0.0


def test_pca_reconstructs_data_inside_its_subspace_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 48, generator=g)
    train = (torch.randn(40, 3, generator=g) @ basis).reshape(40, 3, 4, 4)
    test = (torch.randn(5, 3, generator=g) @ basis).reshape(5, 3, 4, 4)
    assert torch.allclose(pca_reconstruction(train, test, 3), test, atol=1e-4)
    assert not torch.allclose(pca_reconstruction(train, test, 1), test, atol=1e-2)


# ---- the evaluation network ------------------------------------------------------------------


def test_network_input_resizes_and_accepts_pil_and_arrays() -> None:
    from PIL import Image

    images = random_images(2, size=24)
    from_array = to_network_input(images, 16)
    from_pil = to_network_input([Image.fromarray(i) for i in images], 16)
    assert from_array.shape == from_pil.shape == (2, 3, 16, 16)
    assert from_array.min() >= -1 and from_array.max() <= 1
    with pytest.raises(InvalidArgument, match="uint8"):
        to_network_input(images.astype(np.float32), 16)


def test_augment_keeps_white_white_and_stays_in_range() -> None:
    white = torch.ones(4, 3, 16, 16)
    out = augment(white.clone(), torch.Generator().manual_seed(0))
    assert out.shape == white.shape
    assert out.min() >= -1 and out.max() <= 1
    # Shifts and scales pad with white, so a white image only sees noise and brightness.
    assert (out - out.mean(dim=(1, 2, 3), keepdim=True)).abs().max() < 0.5


def test_contrastive_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    net = EvalNetwork(TINY)
    images = ImageSet(random_images(16), [f"c{i}" for i in range(16)], [str(i) for i in range(16)])
    task = EvalNetTask(net, images, torch.randn(16, 384), torch.device("cpu"))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for step in range(40):
        loss = task.loss(16, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_clip_loss_is_low_for_matched_pairs() -> None:
    f = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(math.log(50.0))
    assert clip_loss(f, f, scale) < clip_loss(f, f.roll(1, 0), scale)


def test_eval_network_round_trips_through_fp16_files(tmp_path) -> None:
    torch.manual_seed(0)
    net = EvalNetwork(TINY).eval()
    save_eval_network(net, tmp_path, {"test_ceiling": {"top1": 0.5}})
    loaded = load_eval_network(tmp_path)
    images = random_images(3)
    assert torch.allclose(net.image_features(images), loaded.image_features(images), atol=2e-2)
    assert loaded.provenance["test_ceiling"] == {"top1": 0.5}


def test_missing_eval_network_names_the_file(tmp_path) -> None:
    with pytest.raises(ModelFileError, match=r"evalnet\.json"):
        load_eval_network(tmp_path)


def test_shipped_eval_network_retrieves_real_test_captions() -> None:
    """The shipped network's recorded ceiling is far above chance (1/198 top-1)."""
    net = load_eval_network(shipped_evalnet_path())
    ceiling = net.provenance["test_ceiling"]
    assert ceiling["top5"] > 0.2
    features = net.text_features(["a cat face", "a cat face"])
    assert torch.allclose(features.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_paraphrases_are_many_and_distinct() -> None:
    assert len(PARAPHRASES) >= 50
    assert len({p for p, _ in PARAPHRASES}) == len(PARAPHRASES)
    assert all(p != c for p, c in PARAPHRASES)


# ---- scoring ---------------------------------------------------------------------------------


def fake_reference(net: EvalNetwork, n: int = 12) -> Reference:
    images = ImageSet(
        random_images(n), [f"caption {i}" for i in range(n)], [str(i) for i in range(n)]
    )
    is_test = np.arange(n) % 3 == 0
    return Reference(images, is_test, net.image_features(images.images))


def test_real_images_scored_as_generated_reach_the_ceiling() -> None:
    torch.manual_seed(0)
    net = EvalNetwork(TINY).eval()
    reference = fake_reference(net)
    targets = np.arange(8)
    prompt_set = PromptSet("set", [f"caption {i}" for i in targets], targets)
    scores = score_generation(net, reference.images.images[targets], prompt_set, reference)
    assert scores["own_emoji"] == 1.0
    assert scores["top1"] == scores["real_top1"] and scores["top5"] == scores["real_top5"]
    assert scores["fd"] == pytest.approx(scores["fd_floor"], rel=1e-6)


def test_batched_generation_equals_one_prompt_at_a_time(pipe) -> None:
    settings = SampleSettings(steps=3, cfg=2.0, sampler="euler")
    prompts = ["red square", "blue square", "green square"]
    batched = generate_for_prompts(pipe, prompts, seed=7, settings=settings, batch=2)
    for i, prompt in enumerate(prompts):
        single = pipe.generate(prompt, seed=7, steps=3, cfg=2.0, sampler="euler").images[0]
        assert np.abs(batched[i].astype(int) - np.asarray(single).astype(int)).max() <= 1


def test_codec_report_compares_with_pca_and_renders_markdown(pipe) -> None:
    torch.manual_seed(0)
    net = EvalNetwork(TINY).eval()
    reference = fake_reference(net)
    codec = evaluate_codec(pipe, reference)
    assert codec["compression"] == pytest.approx(3 * 16 * 16 / np.prod(pipe.latent_shape(16, 16)))
    assert codec["test_images"] == 4
    assert math.isfinite(codec["psnr"]) and math.isfinite(codec["pca_psnr"])
    gen = {"images": 1, "own_emoji": 1, "top1": 1, "top5": 1, "real_top1": 1, "real_top5": 1}
    report = {
        "model": "m",
        "image_size": 16,
        "codec": codec,
        "generation": {"set": {**gen, "fd": 0.1, "fd_floor": 0.1}},
        "sweep": [{"sampler": "euler", "steps": 4, "cfg": 3.0, "set": gen}],
    }
    table = markdown_report(report)
    assert "| VAE |" in table and "| PCA, same size |" in table and "| euler | 4 | 3 |" in table


@pytest.mark.parametrize("seeds", ["", "a,b", "-1"])
def test_eval_cli_refuses_bad_seeds(seeds, capsys) -> None:
    assert main(["eval", "--seeds", seeds]) == 2
    assert "seed" in capsys.readouterr().err


def test_roundtrip_own_emoji_is_one_for_a_lossless_codec_and_low_for_a_blind_one() -> None:
    from types import SimpleNamespace

    from latentkit.eval.evaluate import roundtrip_own_emoji

    torch.manual_seed(0)
    net = EvalNetwork(TINY).eval()
    reference = fake_reference(net)
    prompt_set = PromptSet("set", [f"caption {i}" for i in range(8)], np.arange(8))
    lossless = SimpleNamespace(encode=lambda x: x, decode=lambda z: z)
    assert roundtrip_own_emoji(lossless, net, prompt_set, reference) == 1.0
    blind = SimpleNamespace(encode=lambda x: x, decode=lambda z: torch.zeros_like(z))
    assert roundtrip_own_emoji(blind, net, prompt_set, reference) <= 1 / 8


def test_codec_only_folder_is_scored_on_round_trips_against_pca(tmp_path) -> None:
    from latentkit.config import TextConfig
    from latentkit.eval.evaluate import EvalSettings, evaluate
    from latentkit.families.bundle import Bundle, save_bundle
    from latentkit.pipeline import Pipeline

    bundle = Bundle(codec=tiny_codec(), text=TextConfig(max_tokens=16), name="codec")
    pipe = Pipeline.load(save_bundle(bundle, tmp_path / "codec"), device="cpu")
    torch.manual_seed(0)
    net = EvalNetwork(TINY).eval()
    captions = sorted({c for _, c in PARAPHRASES})
    images = ImageSet(random_images(len(captions)), captions, [str(i) for i in captions])
    reference = Reference(
        images, np.arange(len(captions)) % 3 == 0, net.image_features(images.images)
    )
    report = evaluate(pipe, net, EvalSettings(), reference, log=lambda m: None)
    assert "generation" not in report and set(report["roundtrip"]) == {
        "test variants", "training captions"
    }  # fmt: skip
    for row in report["roundtrip"].values():
        assert 0 <= row["vae"] <= 1 and 0 <= row["pca"] <= 1 and row["images"] > 0
    # PCA with at least as many components as training images reproduces training targets.
    assert np.prod(pipe.latent_shape(16, 16)) >= (~reference.is_test).sum()
    assert report["roundtrip"]["training captions"]["pca"] == 1.0
    table = markdown_report(report)
    assert "| PCA own emoji |" in table and "| prompts |" not in table


def test_nearest_rate_counts_a_pixel_equal_twin_as_the_target() -> None:
    features = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    pool = torch.cat([features, features[2:3]])  # item 6 is item 2 drawn again (a shared flag)
    assert nearest_rate(pool, pool, np.arange(7)) == 1.0  # both twins find "themselves"
    assert nearest_rate(features, pool, np.roll(np.arange(6), 1)) == 0.0
    near = torch.nn.functional.normalize(features[2] + 0.01 * torch.randn(8), dim=-1)
    assert nearest_rate(near[None], pool, [6]) == 1.0 and nearest_rate(near[None], pool, [2]) == 1.0
