"""Tiny models, built in a second with fixed seeds, so tests exercise real code paths quickly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.config import CodecConfig, DenoiserConfig, TextConfig
from latentkit.families.bundle import Bundle, save_bundle
from latentkit.models.codec import Codec
from latentkit.models.denoiser import Denoiser

torch.set_num_threads(2)


def tiny_codec(factor: int = 4, size: int = 16, seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    levels = {4: (8, 16, 16), 8: (8, 16, 16, 16), 16: (8, 16, 16, 16, 16)}[factor]
    codec = Codec.from_config(
        CodecConfig(
            factor=factor, latent_channels=4, image_size=size, channels=levels, norm_groups=4
        )
    )
    codec.latent_shift.copy_(torch.tensor([0.1, -0.2, 0.05, 0.0]))
    codec.latent_scale.copy_(torch.tensor([1.5, 0.8, 1.2, 1.0]))
    codec.preview_weights.normal_(0, 0.3)
    return codec.eval()


def tiny_bundle(seed: int = 0) -> Bundle:
    codec = tiny_codec(seed=seed)
    torch.manual_seed(seed + 1)
    denoiser = Denoiser(DenoiserConfig(layers=2, heads=2, head_dim=16, latent_size=4))
    # PixArt zero-initialises its output layer; randomise so outputs depend on the inputs.
    for p in denoiser.parameters():
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.02)
    return Bundle(
        codec=codec,
        text=TextConfig(max_tokens=16),
        denoiser=denoiser.eval(),
        name="tiny",
        sampling={"steps": 4, "cfg": 3.0, "sampler": "euler"},
        training={"note": "random weights for tests"},
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(tiny_bundle(), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def pipe(tiny_model_dir: Path):
    from latentkit.pipeline import Pipeline

    return Pipeline.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def teacher_with_student(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the tiny model with a (briefly) distilled student attached, and the student's
    own `latentkit distill` folder."""
    import shutil

    from latentkit.families.bundle import attach_student
    from latentkit.train.distill import distill_denoiser
    from latentkit.train.loop import TrainConfig

    root = tmp_path_factory.mktemp("fast")
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=3)
    student = distill_denoiser(tiny_model_dir, str(make_image_folder(root)), root / "student",
                               cfg, steps=4, substeps=2, guidance=4.0)  # fmt: skip
    teacher = shutil.copytree(tiny_model_dir, root / "teacher")
    return attach_student(teacher, student), student


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path)


def make_image_folder(root: Path) -> Path:
    """Eight small coloured squares with captions, for training and encoding tests."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    for i in range(8):
        arr = np.full((20, 20, 3), 255, np.uint8)
        colour = rng.integers(0, 255, 3)
        y, x = rng.integers(0, 10, 2)
        arr[y : y + 10, x : x + 10] = colour
        Image.fromarray(arr).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a square number {i % 3}")
    return folder


FAMILY_FOLDERS = ("sd1", "sd2v", "sdxl")
FLOW_FOLDERS = ("sd3", "flux-dev")
DIT_FOLDERS = ("pixart-sigma", "sana")


@pytest.fixture(scope="module", params=("latentkit", *FAMILY_FOLDERS, *FLOW_FOLDERS, *DIT_FOLDERS))
def any_pipe(request, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Our tiny model and tiny SD 1.x, 2.x (v), SDXL, SD3, FLUX.1-dev, PixArt-Sigma and Sana
    folders: the operations' promises must hold on every image family latentkit loads."""
    from family_fixtures import cached_family_folder
    from flow_fixtures import cached_flow_folder

    from latentkit.pipeline import Pipeline

    if request.param == "latentkit":
        return Pipeline.load(tiny_model_dir, device="cpu")
    if request.param in FLOW_FOLDERS:
        pipe = Pipeline.load(cached_flow_folder(tmp_path_factory, request.param), device="cpu")
        pipe.codec.native_size = (64, 64)  # FLUX's native 1024 px is too slow for a test
        return pipe
    if request.param in DIT_FOLDERS:
        from dit_fixtures import cached_dit_folder

        return Pipeline.load(cached_dit_folder(tmp_path_factory, request.param), device="cpu")
    return Pipeline.load(cached_family_folder(tmp_path_factory, request.param), device="cpu")
