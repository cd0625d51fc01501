"""Write the config skeletons latentkit ships for single-file checkpoints (JSON only, no weights).

A single .safetensors checkpoint carries weights but no configs; diffusers' from_single_file
goes online for them unless `config=` names a local folder holding the family's configs. These
are those folders, for the released architectures: Stable Diffusion 1.x (v1-5), 2.x (2-1, 768 px
v-prediction) and SDXL base 1.0. Each config is what diffusers' own classes write for that
architecture (built on the meta device, no weights), the tokenizer settings those releases use;
vocab.json and merges.txt are rebuilt at load time from the CLIP BPE latentkit ships.

    python scripts/build_skeletons.py   # rewrites src/latentkit/families/skeletons/
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import transformers
from accelerate import init_empty_weights

OUT = Path(__file__).resolve().parent.parent / "src" / "latentkit" / "families" / "skeletons"
BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "num_train_timesteps": 1000, "steps_offset": 1, "trained_betas": None}  # fmt: skip
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12, "max_position_embeddings": 77, "vocab_size": 49408,
          "hidden_act": "quick_gelu", "projection_dim": 768, "bos_token_id": 0,
          "eos_token_id": 2, "pad_token_id": 1}  # fmt: skip
OPENCLIP_H = {
    **CLIP_L,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
OPENCLIP_G = {
    **CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
       "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
       "norm_num_groups": 32, "act_fn": "silu", "in_channels": 3, "out_channels": 3}  # fmt: skip
SD2_UNET = {
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "sample_size": 96,
    "upcast_attention": True,
}
SDXL_UNET = {
    "sample_size": 128, "cross_attention_dim": 2048, "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True, "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
}  # fmt: skip


def tokenizer_config(pad: str) -> dict:
    return {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
            "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>", "pad_token": pad, "errors": "replace"}  # fmt: skip


def module_config(cls, **kwargs) -> dict:
    with init_empty_weights():
        model = cls(**kwargs)
    config = dict(model.config)
    config["_class_name"] = cls.__name__
    config["_diffusers_version"] = diffusers.__version__
    return config


def text_config(cls_name: str, values: dict) -> dict:
    config = transformers.CLIPTextConfig(**values).to_dict()
    config["architectures"] = [cls_name]
    return config


def write(folder: Path, name: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def family(name: str, pipeline: str, unet: dict, vae_scale: float, encoders: list, pads: list,
           scheduler: tuple[str, dict], extra_index: dict) -> None:  # fmt: skip
    root = OUT / name
    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", scheduler[0]], **extra_index}  # fmt: skip
    write(root / "unet", "config.json", module_config(diffusers.UNet2DConditionModel, **unet))
    vae = module_config(diffusers.AutoencoderKL, **VAE, scaling_factor=vae_scale)
    write(root / "vae", "config.json", vae)
    for i, ((cls_name, values), pad) in enumerate(zip(encoders, pads, strict=True)):
        suffix = "" if i == 0 else f"_{i + 1}"
        write(root / f"text_encoder{suffix}", "config.json", text_config(cls_name, values))
        write(root / f"tokenizer{suffix}", "tokenizer_config.json", tokenizer_config(pad))
        index[f"text_encoder{suffix}"] = ["transformers", cls_name]
        index[f"tokenizer{suffix}"] = ["transformers", "CLIPTokenizer"]
    sched = {"_class_name": scheduler[0], "_diffusers_version": "0.6.0", **BETAS, **scheduler[1]}
    write(root / "scheduler", "scheduler_config.json", sched)
    write(root, "model_index.json", index)


def main() -> None:
    sd_index = {"safety_checker": [None, None], "feature_extractor": [None, None],
                "requires_safety_checker": False}  # fmt: skip
    family("sd1", "StableDiffusionPipeline",
           {"cross_attention_dim": 768, "attention_head_dim": 8, "sample_size": 64}, 0.18215,
           [("CLIPTextModel", CLIP_L)], ["<|endoftext|>"],
           ("PNDMScheduler", {"skip_prk_steps": True, "set_alpha_to_one": False,
                              "clip_sample": False}), sd_index)  # fmt: skip
    family("sd2", "StableDiffusionPipeline", SD2_UNET, 0.18215,
           [("CLIPTextModel", OPENCLIP_H)], ["!"],
           ("DDIMScheduler", {"prediction_type": "v_prediction", "clip_sample": False,
                              "set_alpha_to_one": False}), sd_index)  # fmt: skip
    family("sdxl", "StableDiffusionXLPipeline", SDXL_UNET, 0.13025,
           [("CLIPTextModel", CLIP_L), ("CLIPTextModelWithProjection", OPENCLIP_G)],
           ["<|endoftext|>", "!"],
           ("EulerDiscreteScheduler", {"timestep_spacing": "leading", "prediction_type": "epsilon",
                                       "interpolation_type": "linear"}),
           {"force_zeros_for_empty_prompt": True, "add_watermarker": None})  # fmt: skip
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
