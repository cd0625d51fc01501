"""The tiny PixArt-alpha / PixArt-Sigma / Sana folders of dit_fixtures: offline, conditioned."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from dit_fixtures import (
    DIT_FAMILIES,
    GEMMA_SP_VOCAB,
    LATENT_CHANNELS,
    MAX_SEQUENCE_LENGTH,
    RELEASE_SCHEDULER_CONFIGS,
    SCALING_FACTOR,
    build_dit_folder,
    cached_dit_folder,
    dit_reference_latents,
    dit_reference_scheduler,
    gemma_vocab_size,
    load_dit_pipeline,
    write_gemma_tokenizer,
)
from family_fixtures import single_thread
from flow_fixtures import t5_vocab_size
from safetensors.torch import load_file

PROMPT = "a photo of an astronaut riding a horse, oil painting"
OTHER = "a red castle at night"
VARIANTS = [
    ("pixart-alpha", False),
    ("pixart-sigma", False),
    ("sana", False),
    ("pixart-alpha", True),
]

# What the samplers run for 4 steps (printed from diffusers 0.42.1): (timesteps, sigmas).
EXPECTED = {
    ("pixart", "euler"): (  # linspace(0, 999, 4)[::-1]; sigma = sqrt((1 - abar) / abar)
        [999.0, 666.0, 333.0, 0.0],
        [157.40727, 9.4889212, 1.462357, 0.01000133, 0.0],
    ),
    ("pixart", "dpmpp_2m"): (  # the release sampler: int timesteps
        [999, 749, 500, 250],
        [157.40727, 17.246983, 3.4429674, 0.95803386, 0.0],
    ),
    ("sana", "euler"): (  # FlowMatchEuler, shift 3 (applied twice to the smallest sigma)
        [1000.0, 857.69232, 602.15057, 8.9285717],
        [1.0, 0.8576923, 0.60215056, 0.0089285718, 0.0],
    ),
    ("sana", "dpmpp_2m"): (  # DPM flow sigmas, shift 3; timesteps = int64(1000 * sigma)
        [999, 899, 749, 499],
        [0.99966645, 0.89963979, 0.74962479, 0.49966654, 0.0],
    ),
}


def _kind(family: str) -> str:
    return "sana" if family == "sana" else "pixart"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(
    scope="session", params=VARIANTS, ids=[f + ("-ms" if ms else "") for f, ms in VARIANTS]
)
def dit_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    family, micro = request.param
    return family, micro, cached_dit_folder(tmp_path_factory, family, micro_conditions=micro)


def test_gemma_tokenizer_offline(tmp_path: Path, no_network: None) -> None:
    import sentencepiece as spm
    from transformers import GemmaTokenizer

    write_gemma_tokenizer(tmp_path / "a")
    write_gemma_tokenizer(tmp_path / "b")
    model = (tmp_path / "a" / "tokenizer.model").read_bytes()
    assert model == (tmp_path / "b" / "tokenizer.model").read_bytes()  # trained deterministically
    assert (tmp_path / "a" / "tokenizer.json").is_file()

    tok = GemmaTokenizer.from_pretrained(tmp_path / "a")
    assert len(tok) == GEMMA_SP_VOCAB == gemma_vocab_size()
    specials = (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id)
    assert specials == (0, 1, 2, 3) and tok.mask_token_id == 4
    assert tok.convert_ids_to_tokens([5, 260]) == ["<0x00>", "<0xFF>"]

    sp = spm.SentencePieceProcessor(model_proto=model)
    texts = (
        PROMPT,
        OTHER,
        "Ｆｕｌｌwidth  double  space ünïcödé 123",
        "zyzzyva quux!!",
        "",
        "x\ny ",
    )
    for text in texts:
        assert tok(text).input_ids == [2, *sp.encode(text)]  # <bos> prepended, no <eos>
    ids = tok(OTHER, padding="max_length", max_length=16, padding_side="right").input_ids
    n = len(sp.encode(OTHER)) + 1
    assert ids[0] == 2 and set(ids[n:]) == {0} and 0 not in ids[:n]


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_dit_folder(tmp_path / "a", "sana", seed=0)
    b = build_dit_folder(tmp_path / "b", "sana", seed=0)
    c = build_dit_folder(tmp_path / "c", "sana", seed=1)
    for part in ("transformer", "text_encoder", "vae"):
        (name,) = [p.name for p in (a / part).glob("*.safetensors")]
        wa, wb, wc = (load_file(f / part / name) for f in (a, b, c))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    # PixArt-alpha and -Sigma share an architecture but not weights.
    alpha = build_dit_folder(tmp_path / "d", "pixart-alpha")
    sigma = build_dit_folder(tmp_path / "d", "pixart-sigma")
    (name,) = [p.name for p in (alpha / "transformer").glob("*.safetensors")]
    wa, ws = load_file(alpha / "transformer" / name), load_file(sigma / "transformer" / name)
    assert wa.keys() == ws.keys() and not any(torch.equal(wa[k], ws[k]) for k in wa)


def test_folder_loads_offline(dit_folder, no_network: None) -> None:
    family, micro, folder = dit_folder
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]
    index = json.loads((folder / "model_index.json").read_text())
    expected_cls = {"pixart-alpha": "PixArtAlphaPipeline", "pixart-sigma": "PixArtSigmaPipeline"}
    assert index["_class_name"] == expected_cls.get(family, "SanaPipeline")

    pipe = load_dit_pipeline(folder, family)
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert all(p.dtype == torch.float32 for m in modules for p in m.parameters())
    assert pipe.vae.config.scaling_factor == SCALING_FACTOR[family]
    assert pipe.vae_scale_factor == 8
    cfg = pipe.transformer.config
    channels = LATENT_CHANNELS[family]
    assert cfg.in_channels == pipe.vae.config.latent_channels == channels

    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    release = {k: v for k, v in RELEASE_SCHEDULER_CONFIGS[family].items() if k[0] != "_"}
    assert {k: sched[k] for k in release} == release
    assert sched["_class_name"] == "DPMSolverMultistepScheduler"

    if family == "sana":
        assert type(pipe.vae).__name__ == "AutoencoderDC"
        assert type(pipe.text_encoder).__name__ == "Gemma2Model"
        assert pipe.text_encoder.config._attn_implementation == "eager"  # soft-capping kept
        assert cfg.caption_channels == pipe.text_encoder.config.hidden_size
        assert cfg.out_channels == channels  # no learned sigma
        assert cfg.patch_size == 1 and cfg.interpolation_scale is None
        assert cfg.timestep_scale == 1.0 and cfg.sample_size == 8
        assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
        assert (folder / "tokenizer" / "tokenizer.model").is_file()
        assert pipe.tokenizer.bos_token_id == 2 and pipe.tokenizer.pad_token_id == 0
    else:
        assert type(pipe.vae).__name__ == "AutoencoderKL"
        assert type(pipe.text_encoder).__name__ == "T5EncoderModel"
        assert cfg.out_channels == 2 * channels  # learned sigma: the pipeline keeps the 1st half
        assert cfg.caption_channels == pipe.text_encoder.config.d_model
        assert pipe.text_encoder.config.vocab_size == t5_vocab_size() >= len(pipe.tokenizer)
        assert (folder / "tokenizer" / "spiece.model").is_file()
        assert cfg.use_additional_conditions == micro
        assert cfg.sample_size == (128 if micro else 8) and cfg.patch_size == 2


def test_schedules() -> None:
    """The Euler reference and the release sampler's time grids, from the release configs."""
    for family in DIT_FAMILIES:
        config = RELEASE_SCHEDULER_CONFIGS[family]
        for name in ("euler", "dpmpp_2m"):
            sched = dit_reference_scheduler(config, family, name)
            sched.set_timesteps(4)
            timesteps, sigmas = EXPECTED[_kind(family), name]
            np.testing.assert_allclose(sched.timesteps.numpy(), timesteps, rtol=1e-6)
            np.testing.assert_allclose(sched.sigmas.numpy(), sigmas, rtol=1e-5)
            if name == "dpmpp_2m":
                assert sched.timesteps.dtype == torch.int64
                assert sched.init_noise_sigma == 1.0
            elif family == "sana":
                assert type(sched).__name__ == "FlowMatchEulerDiscreteScheduler"
                assert sched.config.shift == 3.0  # flow_shift carried over, not the default 1.0
            else:
                # "linspace" spacing: Euler starts at sigma_max * noise, not sqrt(sigma^2 + 1).
                assert float(sched.init_noise_sigma) == pytest.approx(sigmas[0], rel=1e-6)

    # PixArt: sigmas are the training levels sqrt((1 - abar) / abar) at t = 999, 666, 333, 0,
    # with diffusers' float32 betas and cumprod (float64 gives 0.0100005 at t = 0: 8e-5 off).
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32)
    abar = torch.cumprod(1 - betas, dim=0)
    levels = (((1 - abar) / abar) ** 0.5)[[999, 666, 333, 0]].numpy()
    np.testing.assert_allclose(levels, EXPECTED["pixart", "euler"][1][:4], rtol=1e-6)
    # Sana's release grid: shift 3 of 1 - linspace(1, 1/1000, n + 1), reversed, last dropped.
    s = (1 - np.linspace(1, 1 / 1000, 5))[::-1][:-1]
    np.testing.assert_allclose(3 * s / (1 + 2 * s), EXPECTED["sana", "dpmpp_2m"][1][:4], rtol=1e-5)
    # Sana's Euler grid: linspace between the shifted extremes, shifted again.
    smin = 3 * 0.001 / (1 + 2 * 0.001)
    s = np.linspace(1.0, smin, 4)
    np.testing.assert_allclose(3 * s / (1 + 2 * s), EXPECTED["sana", "euler"][1][:4], rtol=1e-5)


def test_noise_and_transformer_inputs(dit_folder, no_network: None) -> None:
    """Initial noise = randn([1, C, h/8, w/8], generator) (PixArt then x init_noise_sigma, which
    it also applies to latents passed in; Sana never scales), and what the transformer is called
    with (CFG batch [uncond, cond])."""
    family, micro, folder = dit_folder
    pipe = load_dit_pipeline(folder, family)
    pipe.scheduler = dit_reference_scheduler(pipe.scheduler.config, family)
    calls: list[dict] = []
    forward = pipe.transformer.forward

    def record(*args, **kwargs):
        calls.append(dict(kwargs, hidden_states=args[0]))
        return forward(*args, **kwargs)

    pipe.transformer.forward = record
    kwargs = {
        "prompt": PROMPT,
        "negative_prompt": "",
        "num_inference_steps": 4,
        "guidance_scale": 4.5,
        "height": 64,
        "width": 64,
        "output_type": "latent",
        "use_resolution_binning": False,
    }
    if family != "sana":
        kwargs["clean_caption"] = False
    channels = LATENT_CHANNELS[family]
    with torch.no_grad(), single_thread():
        a = pipe(**kwargs, generator=torch.Generator().manual_seed(3)).images
        n = len(calls)
        noise = torch.randn((1, channels, 8, 8), generator=torch.Generator().manual_seed(3))
        b = pipe(**kwargs, latents=noise, generator=torch.Generator().manual_seed(99)).images
    assert torch.equal(a, b)
    assert n == 4 and len(calls) == 8

    timesteps, _ = EXPECTED[_kind(family), "euler"]
    length = MAX_SEQUENCE_LENGTH[family]
    for call, t in zip(calls[:4], timesteps, strict=True):
        assert call["hidden_states"].shape == (2, channels, 8, 8)
        assert call["timestep"].dtype == torch.float32 and call["timestep"].shape == (2,)
        np.testing.assert_allclose(call["timestep"].numpy(), [t, t], rtol=1e-6)
        mask = call["encoder_attention_mask"]
        assert mask.shape == (2, length) and mask.dtype == torch.int64
        assert call["encoder_hidden_states"].shape[:2] == (2, length)
        assert mask[0].sum() == 1  # "" -> a single token (T5 </s>; Gemma <bos>)
        assert mask[1].sum() > 5 and torch.equal(
            mask[1, : int(mask[1].sum())].unique(), torch.ones(1)
        )
        added = call.get("added_cond_kwargs")
        if family == "sana":
            assert added is None
        elif micro:
            assert added["resolution"].tolist() == [[64.0, 64.0]] * 2
            assert added["aspect_ratio"].tolist() == [[1.0]] * 2
        else:
            assert added == {"resolution": None, "aspect_ratio": None}


def test_reference_latents(dit_folder, no_network: None) -> None:
    family, _, folder = dit_folder

    def run(prompt=PROMPT, seed=0, cfg=4.5, negative=None, **kw):
        return dit_reference_latents(folder, family, prompt, negative, seed, 4, cfg, 64, 64, **kw)

    x = run()
    assert x.shape == (1, LATENT_CHANNELS[family], 8, 8)
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all() and x.abs().max() > 0
    scale = x.abs().max()  # PixArt's Euler start is sigma_max = 157 x noise
    assert torch.equal(x, run())
    assert (x - run(seed=1)).abs().max() > 1e-1 * scale
    assert (x - run(prompt=OTHER)).abs().max() > 1e-4 * scale  # the text conditions the output
    assert torch.equal(run(negative=""), x)  # no negative prompt is ""
    assert (run(cfg=1.0) - x).abs().max() > 1e-4 * scale
    assert torch.equal(run(prompt="  " + PROMPT.upper() + " "), x)  # lowercased and stripped
    dpm = run(scheduler="dpmpp_2m")
    assert torch.isfinite(dpm).all() and (dpm - x).abs().max() > 1e-4 * scale
    if family == "sana":  # the default complex human instruction changes the conditioning
        assert (run(complex_human_instruction=None) - x).abs().max() > 1e-4 * scale
    else:  # padding is masked in T5 and in cross-attention: the window length does not matter
        longer = run(max_sequence_length=MAX_SEQUENCE_LENGTH[family] + 40)
        torch.testing.assert_close(longer, x, rtol=1e-5, atol=1e-5 * float(scale))

    # Non-square sizes give the matching latent shape. SanaPipeline wants multiples of 32 (the
    # real DC-AE's factor, hard-coded in its check_inputs), PixArt multiples of 8.
    h, w = (64, 96) if family == "sana" else (48, 80)
    z = dit_reference_latents(folder, family, PROMPT, "blurry", 0, 2, 3.0, h, w)
    assert z.shape == (1, LATENT_CHANNELS[family], h // 8, w // 8) and torch.isfinite(z).all()


def test_micro_conditions_condition(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The alpha-1024-MS layout: resolution and aspect ratio move the transformer output."""
    folder = cached_dit_folder(tmp_path_factory, "pixart-alpha", micro_conditions=True)
    pipe = load_dit_pipeline(folder, "pixart-alpha")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    text = torch.randn(1, 6, pipe.text_encoder.config.d_model, generator=gen)
    t = torch.tensor([500.0])

    def call(h, w):
        cond = {"resolution": torch.tensor([[h, w]]), "aspect_ratio": torch.tensor([[h / w]])}
        with torch.no_grad():
            return pipe.transformer(
                x, encoder_hidden_states=text, timestep=t, added_cond_kwargs=cond
            ).sample

    base = call(64.0, 64.0)
    assert base.shape == (1, 8, 8, 8)
    assert (call(1024.0, 1024.0) - base).abs().max() > 1e-4
    assert (call(64.0, 96.0) - base).abs().max() > 1e-4


def test_dcae_codec_api(tmp_path_factory: pytest.TempPathFactory) -> None:
    """AutoencoderDC: encode(x).latent (deterministic, no distribution), decode(z).sample;
    model latents = latent * scaling_factor, no shift."""
    folder = cached_dit_folder(tmp_path_factory, "sana")
    pipe = load_dit_pipeline(folder, "sana")
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latent = pipe.vae.encode(image).latent
        again = pipe.vae.encode(image, return_dict=False)[0]
        decoded = pipe.vae.decode(latent).sample
    assert latent.shape == (1, 32, 8, 12) and torch.equal(latent, again)
    assert decoded.shape == image.shape and torch.isfinite(decoded).all()
    assert not hasattr(pipe.vae.encode(image), "latent_dist")
    assert pipe.vae.spatial_compression_ratio == 8
