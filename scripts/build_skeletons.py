"""Write the config skeletons latentkit ships for single-file checkpoints (JSON only, no weights).

A single .safetensors checkpoint carries weights but no configs; diffusers' from_single_file
goes online for them unless `config=` names a local folder holding the family's configs. These
are those folders, for the released architectures: Stable Diffusion 1.x (v1-5), 2.x (2-1, 768 px
v-prediction), SDXL base 1.0 and SD3 medium (whose transformer config latentkit rewrites from
each file's header at load time, so SD3.5 large and medium files load too; SD3's T5 tokenizer
cannot be shipped and comes from --base). Each config is what diffusers' own classes write for that
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
    if "_use_default_values" in config:  # a set inside diffusers: sorted, so reruns match
        config["_use_default_values"] = sorted(config["_use_default_values"])
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


T5_XXL = {"d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24,
          "vocab_size": 32128, "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6,
          "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
          "tie_word_embeddings": False}  # fmt: skip
SD3_TRANSFORMER = {"sample_size": 128, "patch_size": 2, "in_channels": 16, "out_channels": 16,
                   "num_layers": 24, "attention_head_dim": 64, "num_attention_heads": 24,
                   "joint_attention_dim": 4096, "caption_projection_dim": 1536,
                   "pooled_projection_dim": 2048, "pos_embed_max_size": 192}  # fmt: skip


def sd3() -> None:
    """SD3 medium: MMDiT, a 16-channel VAE without quant convs, CLIP-L and CLIP-G with
    projections, T5-XXL; the flow-matching scheduler with shift 3."""
    root = OUT / "sd3"
    index = {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": diffusers.__version__,
             "transformer": ["diffusers", "SD3Transformer2DModel"],
             "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder_3": ["transformers", "T5EncoderModel"],
             "tokenizer_3": ["transformers", "T5TokenizerFast"],
             "image_encoder": [None, None], "feature_extractor": [None, None]}  # fmt: skip
    transformer = module_config(diffusers.SD3Transformer2DModel, **SD3_TRANSFORMER)
    write(root / "transformer", "config.json", transformer)
    vae = module_config(diffusers.AutoencoderKL, **{**VAE, "latent_channels": 16},
                        scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                        use_post_quant_conv=False)  # fmt: skip
    write(root / "vae", "config.json", vae)
    for i, (values, pad) in enumerate(((CLIP_L, "<|endoftext|>"), (OPENCLIP_G, "!"))):
        suffix = "" if i == 0 else f"_{i + 1}"
        config = text_config("CLIPTextModelWithProjection", values)
        write(root / f"text_encoder{suffix}", "config.json", config)
        write(root / f"tokenizer{suffix}", "tokenizer_config.json", tokenizer_config(pad))
        index[f"text_encoder{suffix}"] = ["transformers", "CLIPTextModelWithProjection"]
        index[f"tokenizer{suffix}"] = ["transformers", "CLIPTokenizer"]
    t5 = transformers.T5Config(**T5_XXL).to_dict()
    t5["architectures"] = ["T5EncoderModel"]
    write(root / "text_encoder_3", "config.json", t5)
    sched = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.29.0",
             "num_train_timesteps": 1000, "shift": 3.0}  # fmt: skip
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
    sd3()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
