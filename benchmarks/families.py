"""latentkit against each family's own diffusers pipeline, on the same weights and seeds, on CPU.

Random weights at the real architecture sizes (SD 1.5: 860M-parameter UNet, CLIP-L, the KL VAE;
SDXL: 2.6B UNet, CLIP-L + CLIP-G), saved once as an fp16 diffusers folder (as releases ship) under
~/.cache/latentkit/bench. In one process, latentkit loads the folder and diffusers' pipeline is
built around the very same modules, so both run the same weights; each generates the same
prompts and seeds with Euler (EulerDiscreteScheduler for diffusers), after a one-step warm-up of
each and in alternating order, and the outputs are compared. Peak memory (RSS) is measured in
fresh processes: after loading, and after sampling; a baseline process that only imports
latentkit and diffusers is measured too, so the weights' own share is visible.

    python benchmarks/families.py --families sd15 --batches 1,4 --steps 10 --threads 2
    python benchmarks/families.py --families sdxl --size 512 --batches 1 --repeats 1
    python benchmarks/families.py --families sd3-2l,flux-dev-2l --size 512 --batches 1
    python benchmarks/families.py --tiny --steps 8

SD3 and FLUX.1 do not fit this machine whole (T5-XXL alone is 19 GB in fp32), so their rows run
the real widths with few blocks ("sd3-2l": SD3 medium's MMDiT with 2 of its 24 blocks, CLIP-L,
CLIP-G, a 2-block T5-XXL; "flux-dev-2l": FLUX.1-dev's transformer with 1 of 19 double and 2 of
38 single blocks, CLIP-L, a 2-block T5-XXL), with the real 16-channel VAE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LATENTKIT_BENCH_CACHE", Path.home() / ".cache/latentkit/bench"))
PROMPT, NEGATIVE = "a photo of an astronaut riding a horse", "blurry"
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12, "max_position_embeddings": 77, "vocab_size": 49408,
          "hidden_act": "quick_gelu", "projection_dim": 768}  # fmt: skip
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "leading",
             "prediction_type": "epsilon"}  # fmt: skip
VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4,
       "down_block_types": ("DownEncoderBlock2D",) * 4,
       "up_block_types": ("UpDecoderBlock2D",) * 4}  # fmt: skip
FAMILIES = {
    "sd15": {
        "pipeline": "StableDiffusionPipeline",
        "unet": {"cross_attention_dim": 768, "attention_head_dim": 8, "sample_size": 64},
        "encoders": [("CLIPTextModel", CLIP_L)],
        "scaling": 0.18215,
        "size": 256,
    },
    "sdxl": {
        "pipeline": "StableDiffusionXLPipeline",
        "unet": {
            "sample_size": 128, "cross_attention_dim": 2048, "block_out_channels": (320, 640, 1280),
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (5, 10, 20), "transformer_layers_per_block": (1, 2, 10),
            "use_linear_projection": True, "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
        },
        "encoders": [("CLIPTextModel", CLIP_L),
                     ("CLIPTextModelWithProjection", {**CLIP_L, "hidden_size": 1280,
                      "intermediate_size": 5120, "num_hidden_layers": 32,
                      "num_attention_heads": 20, "projection_dim": 1280, "hidden_act": "gelu"})],
        "scaling": 0.13025,
        "size": 512,
    },
}  # fmt: skip


T5_XXL_2L = {"d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 2,
             "vocab_size": 32128, "feed_forward_proj": "gated-gelu"}  # fmt: skip
FLOW_VAE = {**VAE, "latent_channels": 16, "use_quant_conv": False, "use_post_quant_conv": False}
FLOW = {
    "sd3-2l": {"pipeline": "StableDiffusion3Pipeline", "size": 512, "cfg": 7.0,
               "transformer": {"sample_size": 128, "patch_size": 2, "in_channels": 16,
                               "out_channels": 16, "num_layers": 2, "attention_head_dim": 64,
                               "num_attention_heads": 24, "joint_attention_dim": 4096,
                               "caption_projection_dim": 1536, "pooled_projection_dim": 2048,
                               "pos_embed_max_size": 192},
               "vae": {"scaling_factor": 1.5305, "shift_factor": 0.0609},
               "scheduler": {"shift": 3.0}},
    "flux-dev-2l": {"pipeline": "FluxPipeline", "size": 512, "cfg": 1.0,
                    "transformer": {"num_layers": 1, "num_single_layers": 2,
                                    "guidance_embeds": True},
                    "vae": {"scaling_factor": 0.3611, "shift_factor": 0.1159},
                    "scheduler": {"shift": 3.0, "use_dynamic_shifting": True,
                                  "base_image_seq_len": 256, "max_image_seq_len": 4096,
                                  "base_shift": 0.5, "max_shift": 1.15}},
}  # fmt: skip


def build_flow_folder(family: str) -> Path:
    """SD3 / FLUX.1 at their real widths with few blocks, random fp16 weights, made once."""
    import diffusers
    import torch
    import transformers

    sys.path.insert(0, str(ROOT / "tests"))
    from family_fixtures import write_clip_tokenizer
    from flow_fixtures import write_t5_tokenizer

    spec, folder = FLOW[family], CACHE / f"{family}-random"
    torch.manual_seed(0)
    tmp = CACHE / f".{family}-tokenizers"
    clip_g = {**CLIP_L, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
              "num_attention_heads": 20, "projection_dim": 1280, "hidden_act": "gelu"}  # fmt: skip
    clips = [CLIP_L, clip_g] if family.startswith("sd3") else [CLIP_L]
    parts: dict = {}
    for i, cfg in enumerate(clips):
        suffix = "" if i == 0 else f"_{i + 1}"
        cls = transformers.CLIPTextModelWithProjection if family.startswith("sd3") else (
            transformers.CLIPTextModel)  # fmt: skip
        parts[f"text_encoder{suffix}"] = cls(transformers.CLIPTextConfig(**cfg)).half()
        write_clip_tokenizer(tmp / f"tokenizer{suffix}")
        parts[f"tokenizer{suffix}"] = transformers.CLIPTokenizer.from_pretrained(
            tmp / f"tokenizer{suffix}"
        )
    t5 = "_3" if family.startswith("sd3") else "_2"
    parts[f"text_encoder{t5}"] = transformers.T5EncoderModel(
        transformers.T5Config(**T5_XXL_2L)
    ).half()
    write_t5_tokenizer(tmp / f"tokenizer{t5}")
    parts[f"tokenizer{t5}"] = transformers.T5TokenizerFast.from_pretrained(tmp / f"tokenizer{t5}")
    cls = diffusers.SD3Transformer2DModel if family.startswith("sd3") else (
        diffusers.FluxTransformer2DModel)  # fmt: skip
    parts["transformer"] = cls(**spec["transformer"]).half()
    parts["vae"] = diffusers.AutoencoderKL(**FLOW_VAE, **spec["vae"]).half()
    parts["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler(**spec["scheduler"])
    pipe = getattr(diffusers, spec["pipeline"])(**parts)
    pipe.save_pretrained(CACHE / f".{family}-building", safe_serialization=True)
    os.replace(CACHE / f".{family}-building", folder)
    return folder


def build_folder(family: str) -> Path:
    """The random-weight fp16 folder of a family, made once (a few minutes for SDXL)."""
    folder = CACHE / f"{family}-random"
    if (folder / "model_index.json").is_file():
        return folder
    if family in FLOW:
        return build_flow_folder(family)
    import diffusers
    import torch
    import transformers

    sys.path.insert(0, str(ROOT / "tests"))
    from family_fixtures import write_clip_tokenizer

    spec = FAMILIES[family]
    torch.manual_seed(0)
    parts = {"unet": diffusers.UNet2DConditionModel(**spec["unet"]).half()}
    vae = diffusers.AutoencoderKL(**VAE, scaling_factor=spec["scaling"]).half()
    parts["vae"] = vae
    tmp = CACHE / f".{family}-tokenizers"
    for i, (cls, cfg) in enumerate(spec["encoders"]):
        suffix = "" if i == 0 else f"_{i + 1}"
        config = transformers.CLIPTextConfig(**cfg)
        parts[f"text_encoder{suffix}"] = getattr(transformers, cls)(config).half()
        write_clip_tokenizer(tmp / f"tokenizer{suffix}")
        parts[f"tokenizer{suffix}"] = transformers.CLIPTokenizer.from_pretrained(
            tmp / f"tokenizer{suffix}"
        )
    parts["scheduler"] = diffusers.EulerDiscreteScheduler(**SCHEDULER)
    extra = (
        {"add_watermarker": False}
        if family == "sdxl"
        else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    )
    pipe = getattr(diffusers, spec["pipeline"])(**parts, **extra)
    pipe.save_pretrained(CACHE / f".{family}-building", safe_serialization=True)
    os.replace(CACHE / f".{family}-building", folder)
    return folder


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def measure_memory(folder: Path, size: int, threads: int) -> dict:
    """Peak RSS of a fresh process after imports, after loading, and after one 2-step image.
    RSS counts the mapped weight files too (page cache the kernel can drop); the peak of
    anonymous memory, sampled every 10 ms, is what loading really holds."""
    code = f"""
import json, resource, threading, time, torch
torch.set_num_threads({threads})
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
peak = [0]
def sample():
    while True:
        peak[0] = max(peak[0], anon())
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()
from latentkit.pipeline import Pipeline
import diffusers, transformers
from diffusers import UNet2DConditionModel, AutoencoderKL
from transformers import CLIPTextModel
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
t0 = time.perf_counter()
pipe = Pipeline.load({str(folder)!r}, device="cpu")
load_s = time.perf_counter() - t0
after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
time.sleep(0.05)
anon_load = peak[0] / 1e9
pipe.generate("x", seed=0, steps=2, height={size}, width={size})
after_sample = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps({{"load_seconds": load_s, "rss_after_imports_gb": baseline,
                  "peak_rss_after_load_gb": after_load, "peak_anonymous_after_load_gb": anon_load,
                  "peak_anonymous_after_sampling_gb": peak[0] / 1e9,
                  "peak_rss_after_sampling_gb": after_sample}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def diffusers_pipeline(pipe, family: str):
    """diffusers' own pipeline around latentkit's modules (no copies), with Euler."""
    import diffusers

    text, network = pipe.text_encoder, pipe.network
    if family in FLOW:
        parts = {"vae": pipe.codec.vae, "transformer": network.transformer,
                 "scheduler": diffusers.FlowMatchEulerDiscreteScheduler.from_config(
                     pipe.components.schedule.config)}  # fmt: skip
        if family.startswith("sd3"):
            parts.update(text_encoder=text.clips[0], text_encoder_2=text.clips[1],
                         tokenizer=text.tokenizers[0], tokenizer_2=text.tokenizers[1],
                         tokenizer_3=text.t5[0], text_encoder_3=text.t5[1])  # fmt: skip
        else:
            parts.update(tokenizer=text.clip[0], text_encoder=text.clip[1],
                         tokenizer_2=text.t5[0], text_encoder_2=text.t5[1])  # fmt: skip
        theirs = getattr(diffusers, FLOW[family]["pipeline"])(**parts)
        theirs.set_progress_bar_config(disable=True)
        return theirs
    parts = {"vae": pipe.codec.vae, "unet": network.unet,
             "scheduler": diffusers.EulerDiscreteScheduler.from_config(network.schedule.config),
             "text_encoder": text.encoders[0], "tokenizer": text.tokenizers[0]}  # fmt: skip
    if family == "sdxl":
        parts.update(text_encoder_2=text.encoders[1], tokenizer_2=text.tokenizers[1],
                     add_watermarker=False)  # fmt: skip
    else:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    theirs = getattr(diffusers, FAMILIES[family]["pipeline"])(**parts)
    theirs.set_progress_bar_config(disable=True)
    return theirs


def compare_speed(folder: Path, family: str, args: argparse.Namespace, size: int) -> list[dict]:
    import numpy as np
    import torch

    from latentkit.pipeline import Pipeline

    torch.set_num_threads(args.threads)
    pipe = Pipeline.load(folder, device="cpu")
    theirs = diffusers_pipeline(pipe, family)
    cfg = FLOW[family]["cfg"] if family in FLOW else 7.5
    rows = []
    for batch in args.batches:

        def ours_run(steps: int, batch=batch):
            return pipe.generate(PROMPT, NEGATIVE, seed=0, steps=steps, cfg=cfg, n=batch,
                                 sampler="euler", height=size, width=size).images  # fmt: skip

        def theirs_run(steps: int, batch=batch):
            gens = [torch.Generator().manual_seed(i) for i in range(batch)]
            extra = {"guidance_scale": cfg}
            if family.startswith("flux"):  # dev: the distilled guidance input, cfg stays 1
                extra = {"guidance_scale": 3.5, "true_cfg_scale": cfg}
            return theirs(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps,
                          height=size, width=size, generator=gens,
                          num_images_per_prompt=batch, **extra).images  # fmt: skip

        times: dict[str, list[float]] = {"latentkit": [], "diffusers": []}
        outputs = {}
        runs = [("latentkit", ours_run), ("diffusers", theirs_run)]
        for _, run in runs:  # warm-up: oneDNN builds its kernels for each new shape once
            run(1)
        for repeat in range(args.repeats):
            for name, run in runs if repeat % 2 == 0 else runs[::-1]:  # alternate who goes first
                t0 = time.perf_counter()
                outputs[name] = run(args.steps)
                times[name].append(time.perf_counter() - t0)
        pairs = zip(outputs["latentkit"], outputs["diffusers"], strict=True)
        diff = max(int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())
                   for a, b in pairs)  # fmt: skip
        ours_s, theirs_s = (statistics.median(times[k]) for k in ("latentkit", "diffusers"))
        rows.append({"family": family, "size": size, "batch": batch, "steps": args.steps,
                     "latentkit_s": round(ours_s, 2), "diffusers_s": round(theirs_s, 2),
                     "latentkit_img_s": round(batch / ours_s, 4),
                     "diffusers_img_s": round(batch / theirs_s, 4),
                     "speedup": round(theirs_s / ours_s, 3), "max_pixel_diff": diff,
                     "all_times": times})  # fmt: skip
        print(f"{family} {size}px batch {batch}: latentkit {ours_s:.1f} s, diffusers "
              f"{theirs_s:.1f} s ({theirs_s / ours_s:.2f}x), max pixel difference {diff}",
              flush=True)  # fmt: skip
    return rows


TINY = {  # family -> (fixture module, builder, reference, arguments)
    "sd3": "flow", "flux-dev": "flow", "flux-schnell": "flow", "pixart-sigma": "dit",
    "sana": "dit", "ltx-video": "ltx",
}  # fmt: skip


def tiny_pipelines(family: str, kind: str, root: Path, steps: int) -> tuple:
    """(folder, latentkit arguments, diffusers pipeline, its call, unpack) for a tiny family,
    the diffusers pipeline loaded once with the Euler scheduler the tests compare against."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import dit_fixtures
    import flow_fixtures
    import ltx_fixtures

    call = {"prompt": PROMPT, "num_inference_steps": steps, "output_type": "latent"}
    unpack = None
    if kind == "flow":
        folder = flow_fixtures.build_flow_folder(root, family)
        pipe = flow_fixtures.load_flow_pipeline(folder, family)
        flux = family.startswith("flux")
        ours = {"cfg": 1.0 if flux else 4.0, "height": 64, "width": 64}
        call.update(height=64, width=64, max_sequence_length=256 if family != "flux-dev" else 512)
        call["true_cfg_scale" if flux else "guidance_scale"] = ours["cfg"]
        if flux:
            unpack = lambda x: flow_fixtures.unpack_flux_latents(x, 64, 64)  # noqa: E731
    elif kind == "dit":
        folder = dit_fixtures.build_dit_folder(root, family)
        pipe = dit_fixtures.load_dit_pipeline(folder, family)
        pipe.scheduler = dit_fixtures.dit_reference_scheduler(pipe.scheduler.config, family)
        ours = {"cfg": 4.0, "height": 64, "width": 64}
        call.update(height=64, width=64, guidance_scale=4.0, negative_prompt="",
                    use_resolution_binning=False)  # fmt: skip
        if family.startswith("pixart"):
            call["clean_caption"] = False
    else:
        folder = ltx_fixtures.build_ltx_folder(root)
        pipe = ltx_fixtures.load_ltx_pipeline(folder)
        ours = {"cfg": 3.0, "height": 32, "width": 32, "frames": 9}
        call.update(height=32, width=32, num_frames=9, guidance_scale=3.0)
        f, h = (
            (9 - 1) // pipe.vae_temporal_compression_ratio + 1,
            32 // pipe.vae_spatial_compression_ratio,
        )
        pt, p = pipe.transformer_temporal_patch_size, pipe.transformer_spatial_patch_size
        unpack = lambda x: ltx_fixtures.unpack_ltx_latents(x, f // pt, h // p, h // p, p, pt)  # noqa: E731

    def theirs():
        out = pipe(**call, generator=torch.Generator("cpu").manual_seed(0))
        out = out.frames if kind == "ltx" else out.images
        return unpack(out) if unpack is not None else out

    pipe.set_progress_bar_config(disable=True)
    return folder, ours, theirs


def tiny_rows(repeats: int, steps: int) -> list[dict]:
    """The families too big for this machine at real width, at the test suite's tiny sizes:
    latentkit against the family's own diffusers pipeline (same folder, seed, Euler), each
    loaded once, one thread. At these sizes the networks cost little, so this measures what
    each pipeline adds around them."""
    import tempfile

    import torch

    from latentkit.pipeline import Pipeline

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, kind in TINY.items():
            folder, args, theirs = tiny_pipelines(family, kind, Path(tmp), steps)
            pipe = Pipeline.load(folder, device="cpu", kind="video" if kind == "ltx" else "image")

            def ours(pipe=pipe, args=args):
                return pipe.generate(PROMPT, seed=0, steps=steps, **args).latents

            times: dict[str, list[float]] = {"latentkit": [], "diffusers": []}
            outputs = {}
            for _ in range(repeats + 1):  # the first round warms both up and is not counted
                for name, run in (("latentkit", ours), ("diffusers", theirs)):
                    t0 = time.perf_counter()
                    outputs[name] = run()
                    times[name].append(time.perf_counter() - t0)
            mine, reference = outputs["latentkit"], outputs["diffusers"]
            diff = float((mine - reference).norm() / reference.norm())
            ours_s, theirs_s = (statistics.median(times[k][1:]) for k in times)
            rows.append({"family": f"{family} (tiny)", "size": args["height"], "batch": 1,
                         "steps": steps, "latentkit_s": round(ours_s, 4),
                         "diffusers_s": round(theirs_s, 4),
                         "latentkit_img_s": round(1 / ours_s, 2),
                         "diffusers_img_s": round(1 / theirs_s, 2),
                         "speedup": round(theirs_s / ours_s, 3), "relative_difference": diff,
                         "max_pixel_diff": None, "all_times": times})  # fmt: skip
            print(f"{family} (tiny): latentkit {ours_s * 1000:.0f} ms, diffusers "
                  f"{theirs_s * 1000:.0f} ms ({theirs_s / ours_s:.2f}x), final latents differ "
                  f"by {diff:.1e} relative", flush=True)  # fmt: skip
    return rows


def difference(row: dict) -> str:
    """Real-width rows compare decoded pixels; tiny rows compare final latents."""
    if row.get("max_pixel_diff") is not None:
        return f"max {row['max_pixel_diff']} px"
    return f"latents {row['relative_difference']:.1e} rel."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="sd15")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=None, help="default: 256 (SD 1.5), 512 (SDXL)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "families.json"))
    ap.add_argument("--build", help="only build this family's folder (used internally)")
    ap.add_argument("--memory-only", action="store_true", help="measure memory, skip speed")
    ap.add_argument("--tiny", action="store_true", help="rows for the families at tiny size")
    args = ap.parse_args()
    if args.build:
        build_folder(args.build)
        return
    args.batches = [int(b) for b in args.batches.split(",")]
    report = {"threads": args.threads, "device": "cpu", "rows": [], "memory": {}}
    out = Path(args.out)
    if out.is_file():
        report = {**report, **json.loads(out.read_text())}
    if args.tiny:
        rows = tiny_rows(args.repeats, args.steps)
        report["rows"] = [r for r in report["rows"] if "(tiny)" not in r["family"]] + rows
        out.write_text(json.dumps(report, indent=2))
        args.families = ""
    for family in filter(None, args.families.split(",")):
        # built in its own process, so this one holds only what latentkit loads
        build = [sys.executable, __file__, "--build", family]
        subprocess.run(build, check=True)
        folder = build_folder(family)
        size = args.size or {**FAMILIES, **FLOW}[family]["size"]
        weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
        memory = {"weights_on_disk_gb": round(weights / 1e9, 2), "disk_dtype": "float16",
                  **measure_memory(folder, size, args.threads)}  # fmt: skip
        report["memory"][family] = memory
        print(f"{family}: {json.dumps(memory)}", flush=True)
        if not args.memory_only:
            rows = compare_speed(folder, family, args, size)
            report["rows"] = [r for r in report["rows"] if r["family"] != family] + rows
        out.write_text(json.dumps(report, indent=2))
    print("| family | size | batch | latentkit img/s | diffusers img/s | speedup | difference |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(
            f"| {r['family']} | {r['size']} | {r['batch']} | {r['latentkit_img_s']} | "
            f"{r['diffusers_img_s']} | {r['speedup']}x | {difference(r)} |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
