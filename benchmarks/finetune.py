"""Teach the shipped model a style it has not seen (Noto Color Emoji) with a LoRA, and a
character with textual inversion; measure style similarity, content control, size and time.

The shipped model was trained on OpenMoji only (flat colours, black outlines); Noto's emoji are
shaded and outline-free. The benchmark renders Noto emoji (Debian `fonts-noto-color-emoji`) at
32 px on white, trains a LoRA on emoji names disjoint from the evaluated ones, and scores
generations for held-out names before and after.

Scores come from the evaluation network (`latentkit.eval.evalnet.load_eval_network`) when it is
installed with weights; otherwise from a clearly labelled pixel-space proxy: images mapped to
16x16, white subtracted, L2-normalised, compared by cosine similarity and nearest neighbour.

    python benchmarks/finetune.py --minutes 9 --token-minutes 3
    python benchmarks/finetune.py --rescore      # re-score the saved samples (e.g. with evalnet)
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

NOTO = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
SIZE = 32
TOKEN, TOKEN_WORD, TOKEN_EMOJI = "<noto-robot>", "robot", "\U0001f916"
TOKEN_PROMPTS = [TOKEN, f"{TOKEN} face", f"happy {TOKEN}", f"{TOKEN} with heart"]
PLAIN_PROMPTS = [p.replace(TOKEN, TOKEN_WORD) for p in TOKEN_PROMPTS]


# -- data -----------------------------------------------------------------------------------


def render_noto(text: str, size: int = SIZE, scale: float = 1.0, dx: int = 0, dy: int = 0):
    """One emoji from the Noto colour font, centred on white at `size` px; None if the font
    has no single glyph for it (it would draw several)."""
    font = ImageFont.truetype(str(NOTO), 109)
    canvas = Image.new("RGBA", (300, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((10, 10), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None or box[2] - box[0] > 140:
        return None
    glyph = canvas.crop(box)
    side = int(max(glyph.size) / (0.9 * scale))
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    at = (
        (side - glyph.width) // 2 + dx * side // size,
        (side - glyph.height) // 2 + dy * side // size,
    )
    square.alpha_composite(glyph, at)
    return square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def emoji_text(name: str) -> str:
    return "".join(chr(int(part, 16)) for part in name.split("-"))


def noto_names(limit: int = 1000) -> list[tuple[str, str, Image.Image]]:
    """(name, caption, image) for base emoji (no skin tone / hair / gender variants)."""
    from latentkit.data.openmoji import base_name, list_named_emoji

    out = []
    for name, caption in list_named_emoji():
        if base_name(name) is not None:  # a modifier variant of another emoji
            continue
        img = render_noto(emoji_text(name))
        if img is not None:
            out.append((name, caption, img))
        if len(out) >= limit:
            break
    return out


def write_folder(items: list[tuple[str, str, Image.Image]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, caption, img in items:
        img.save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(caption)
    return folder


def token_folder(folder: Path, n: int = 8) -> Path:
    """n views of one Noto character (slightly shifted and scaled): a textual-inversion set."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i in range(n):
        img = render_noto(TOKEN_EMOJI, scale=rng.uniform(0.8, 1.0), dx=rng.randint(-2, 2),
                          dy=rng.randint(-2, 2))  # fmt: skip
        img.save(folder / f"robot{i}.png")
    return folder


# -- scoring --------------------------------------------------------------------------------


def pixel_features(images: np.ndarray) -> torch.Tensor:
    """PROXY: [B, H, W, 3] uint8 -> 16x16 ink maps (white = 0), L2-normalised."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    x = F.adaptive_avg_pool2d(x, 16) - 1.0
    return F.normalize(x.flatten(1), dim=1)


def scorer() -> tuple[str, Callable[[np.ndarray], torch.Tensor], object | None]:
    """The evaluation network if available, else the pixel proxy (named in the JSON)."""
    try:
        from latentkit.eval.evalnet import load_eval_network

        net = load_eval_network()
        return "evalnet", lambda imgs: net.image_features(torch.from_numpy(imgs)), net
    except Exception as e:  # missing module or weights: fall back, and say so
        print(f"evaluation network unavailable ({type(e).__name__}: {e}); using the pixel proxy")
        return "pixel-proxy (16x16 ink maps, cosine)", pixel_features, None


def style_scores(feats: torch.Tensor, style: torch.Tensor, other: torch.Tensor) -> dict:
    """Mean best cosine to the style set, and how often the nearest reference is in-style."""
    to_style = (feats @ style.T).max(1).values
    to_other = (feats @ other.T).max(1).values
    return {
        "style_similarity": round(to_style.mean().item(), 4),
        "other_style_similarity": round(to_other.mean().item(), 4),
        "nearest_is_style": round((to_style > to_other).float().mean().item(), 4),
    }


def retrieval(feats: torch.Tensor, refs: torch.Tensor) -> dict:
    """Generation i should be nearest to reference i (same emoji name) among all references."""
    sims = feats @ refs.T
    rank = (sims > sims.diag()[:, None]).sum(1)
    return {"top1": round((rank < 1).float().mean().item(), 4),
            "top5": round((rank < 5).float().mean().item(), 4),
            "chance_top1": round(1 / len(refs), 4)}  # fmt: skip


def text_retrieval(net, images: np.ndarray, prompts: list[str]) -> dict:
    if net is None:
        return {}
    sims = net.image_features(torch.from_numpy(images)) @ net.text_features(prompts).T
    rank = (sims > sims.diag()[:, None]).sum(1)
    return {"text_top1": round((rank < 1).float().mean().item(), 4),
            "text_top5": round((rank < 5).float().mean().item(), 4)}  # fmt: skip


# -- generation -----------------------------------------------------------------------------


def generate(pipe, prompts: list[str], seeds: list[int]) -> np.ndarray:
    out = []
    for prompt, seed in zip(prompts, seeds, strict=True):
        out.append(np.asarray(pipe.generate(prompt, seed=seed, steps=25, cfg=3.0).images[0]))
    return np.stack(out)


def grid(rows: list[np.ndarray], path: Path, scale: int = 3) -> None:
    """Rows of equally many 32 px images, upscaled with nearest-neighbour for the docs."""
    cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (cols * (SIZE + 2) * scale, len(rows) * (SIZE + 2) * scale), "white")
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = Image.fromarray(img).resize(
                (SIZE * scale, SIZE * scale), Image.Resampling.NEAREST
            )
            canvas.paste(tile, (c * (SIZE + 2) * scale, r * (SIZE + 2) * scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


# -- the benchmark --------------------------------------------------------------------------


def split(args: argparse.Namespace) -> tuple[list, list]:
    """Held-out emoji names (generated and scored) and disjoint training names."""
    items = noto_names()
    random.Random(0).shuffle(items)
    return items[: args.eval], items[args.eval : args.eval + args.train]


def run(args: argparse.Namespace) -> dict:
    from latentkit.models.lora import LoraSpec
    from latentkit.pipeline import Pipeline
    from latentkit.train.finetune import train_lora, train_token
    from latentkit.train.loop import TrainConfig

    work = Path(args.work)
    held, train = split(args)
    folder = write_folder(train, work / "noto-train")
    lora = work / "noto-style.safetensors"
    t0 = time.perf_counter()
    if not lora.is_file():
        cfg = TrainConfig(steps=args.steps, minutes=args.minutes, batch_size=32, lr=1e-3,
                          warmup=50, ema_decay=0.99, checkpoint_every=100)  # fmt: skip
        train_lora(str(folder), lora, LoraSpec(rank=args.rank), cfg, device="cpu")
    lora_wall = time.perf_counter() - t0
    meta = json.loads(__import__("safetensors").safe_open(lora, "pt").metadata()["latentkit"])

    prompts = [caption for _, caption, _ in held]
    seeds = list(range(len(prompts)))
    base = Pipeline.load(device="cpu")
    before = generate(base, prompts, seeds)
    styled = Pipeline.load(device="cpu")
    styled.load_lora(lora, 1.0)
    after = generate(styled, prompts, seeds)

    concept_dir = token_folder(work / "robot")
    tokens = work / "noto-robot.safetensors"
    if not tokens.is_file():
        cfg = TrainConfig(steps=args.token_steps, minutes=args.token_minutes, batch_size=8,
                          lr=5e-3, warmup=20, ema_decay=0.9, grad_clip=0.0,
                          checkpoint_every=100)  # fmt: skip
        train_token(str(concept_dir), [TOKEN], [TOKEN_WORD], tokens, cfg, device="cpu")
    token_meta = json.loads(
        __import__("safetensors").safe_open(tokens, "pt").metadata()["latentkit"]
    )
    ti = Pipeline.load(device="cpu")
    ti.load_tokens(tokens)
    n = args.token_samples
    ti_prompts = [TOKEN_PROMPTS[i % len(TOKEN_PROMPTS)] for i in range(n)]
    plain_prompts = [PLAIN_PROMPTS[i % len(PLAIN_PROMPTS)] for i in range(n)]
    with_token = generate(ti, ti_prompts, list(range(n)))
    with_word = generate(ti, plain_prompts, list(range(n)))
    both = Pipeline.load(device="cpu")
    both.load_tokens(tokens)
    both.load_lora(lora, 1.0)
    combined = generate(both, ti_prompts[:4], list(range(4)))

    samples = work / "samples.npz"
    np.savez_compressed(
        samples, before=before, after=after, with_token=with_token, with_word=with_word,
        combined=combined, noto_held=np.stack([np.asarray(i) for _, _, i in held]),
        noto_train=np.stack([np.asarray(i) for _, _, i in train]),
        concept=np.stack([np.asarray(Image.open(p)) for p in sorted(concept_dir.glob("*.png"))]),
    )  # fmt: skip
    with open(work / "prompts.json", "w") as f:
        json.dump({"held": prompts, "token": ti_prompts, "plain": plain_prompts}, f)
    report = score(work, args)
    report["lora"].update({
        "file_bytes": lora.stat().st_size,
        "rank": meta["rank"],
        "train_seconds": meta["training"]["seconds"],
        "train_steps": meta["training"]["steps"],
        "train_images": meta["training"]["images"],
        "batch": 32,
        "wall_seconds_including_latent_cache": round(lora_wall, 1),
        "final_loss": meta["training"]["final_loss"],
    })  # fmt: skip
    report["textual_inversion"].update({
        "file_bytes": tokens.stat().st_size,
        "train_seconds": token_meta["training"]["seconds"],
        "train_steps": token_meta["training"]["steps"],
        "concept_images": token_meta["training"]["images"],
    })  # fmt: skip
    pictures(work, Path(args.docs))
    return report


def nearest_rate(feats: torch.Tensor, target: torch.Tensor, other: torch.Tensor) -> float:
    """Share of images whose nearest reference is in `target` rather than `other`."""
    hit = (feats @ target.T).max(1).values > (feats @ other.T).max(1).values
    return round(hit.float().mean().item(), 4)


def command_line(args: argparse.Namespace) -> str:
    skip = ("rescore", "docs", "work", "out", "prepare_only")
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in skip]
    return "python benchmarks/finetune.py " + " ".join(flags)


def score(work: Path, args: argparse.Namespace) -> dict:
    s = np.load(work / "samples.npz")
    prompts = json.loads((work / "prompts.json").read_text())
    kind, feats, net = scorer()
    from latentkit.data.openmoji import load_openmoji

    openmoji, _ = load_openmoji(SIZE)
    by_caption = {c: i for i, c in enumerate(openmoji.captions)}
    held_open = np.stack([openmoji.images[by_caption[c]] for c in prompts["held"]])
    noto_style = feats(np.concatenate([s["noto_held"], s["noto_train"]]))
    openmoji_style = feats(openmoji.images[: len(noto_style)])
    f_before, f_after = feats(s["before"]), feats(s["after"])
    concept = feats(s["concept"])
    f_tok, f_word = feats(s["with_token"]), feats(s["with_word"])
    report = {
        "benchmark": "finetune",
        "scorer": kind,
        "device": "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": command_line(args),
        "lora": {
            "held_out_prompts": len(prompts["held"]),
            "before": style_scores(f_before, noto_style, openmoji_style),
            "after": style_scores(f_after, noto_style, openmoji_style),
            "retrieval_before_vs_openmoji_refs": retrieval(f_before, feats(held_open)),
            "retrieval_after_vs_openmoji_refs": retrieval(f_after, feats(held_open)),
            "retrieval_before_vs_noto_refs": retrieval(f_before, feats(s["noto_held"])),
            "retrieval_after_vs_noto_refs": retrieval(f_after, feats(s["noto_held"])),
            "text_retrieval_before": text_retrieval(net, s["before"], prompts["held"]),
            "text_retrieval_after": text_retrieval(net, s["after"], prompts["held"]),
        },
        "textual_inversion": {
            "token": TOKEN,
            "plain_word": TOKEN_WORD,
            "samples": len(s["with_token"]),
            "similarity_to_concept_with_token": round((f_tok @ concept.T).mean().item(), 4),
            "similarity_to_concept_with_word": round((f_word @ concept.T).mean().item(), 4),
            "nearest_is_concept_with_token": nearest_rate(f_tok, concept, openmoji_style),
            "nearest_is_concept_with_word": nearest_rate(f_word, concept, openmoji_style),
        },
    }
    return report


def pictures(work: Path, docs: Path) -> None:
    s = np.load(work / "samples.npz")
    k = 10
    grid([s["noto_held"][:k], s["before"][:k], s["after"][:k]], docs / "lora-noto.png")
    grid([s["concept"][:8], s["with_word"][:8], s["with_token"][:8], s["combined"][:4]],
         docs / "token-robot.png")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=9.0, help="LoRA training budget")
    p.add_argument("--steps", type=int, default=5000, help="LoRA step cap")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--train", type=int, default=600, help="Noto images to train on")
    p.add_argument("--eval", type=int, default=48, help="held-out emoji names to generate")
    p.add_argument("--token-minutes", type=float, default=3.0)
    p.add_argument("--token-steps", type=int, default=400)
    p.add_argument("--token-samples", type=int, default=16)
    p.add_argument("--work", default="runs/finetune-bench")
    p.add_argument("--docs", default="docs/img")
    p.add_argument("--out", default="benchmarks/finetune.json")
    p.add_argument("--rescore", action="store_true", help="score saved samples only")
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="only write the Noto style folder and the robot folder into --work",
    )
    args = p.parse_args()
    torch.manual_seed(0)
    if args.prepare_only:
        _, train = split(args)
        print(
            write_folder(train, Path(args.work) / "noto-train"),
            token_folder(Path(args.work) / "robot"),
        )
        return
    if args.rescore:
        report = score(Path(args.work), args)
        previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        for part in ("lora", "textual_inversion"):
            report[part] = {**previous.get(part, {}), **report[part]}
    else:
        report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
