"""The GIFs in docs/video.md, from the shipped video model (or --model DIR).

Each GIF shows several clips side by side, scaled up 4x with nearest-neighbour so the 32 px
frames stay visible in a browser. Everything is seeded, so rerunning gives the same files.

    python scripts/video_docs.py [--model DIR] [--out docs/img]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentkit.data.video import clips_to_tensor, openmoji_clips, tensor_to_clips
from latentkit.ops import image_to_video, interpolate_latents
from latentkit.outputs import write_animation
from latentkit.pipeline import Pipeline

PROMPTS = [
    "a cat face moving left",
    "a grinning face moving right",
    "a red apple moving up",
    "a rocket moving down",
    "a dog face zooming in",
    "a sun zooming out",
    "a star rotating clockwise",
    "a ghost bouncing",
]


def side_by_side(clips: list[np.ndarray], scale: int = 4, gap: int = 2) -> list[Image.Image]:
    frames = min(len(c) for c in clips)
    h, w = clips[0].shape[1:3]
    out = []
    for f in range(frames):
        canvas = np.full((h, len(clips) * (w + gap) - gap, 3), 255, np.uint8)
        for i, c in enumerate(clips):
            canvas[:, i * (w + gap) : i * (w + gap) + w] = c[f]
        img = Image.fromarray(canvas)
        out.append(img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="docs/img")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    pipe = Pipeline.load(args.model, device="cpu", kind="video")
    clips = [pipe.generate(p, seed=0).clips[0] for p in PROMPTS]
    write_animation(side_by_side(clips[:4]), out / "video-t2v-moves.gif", fps=8)
    write_animation(side_by_side(clips[4:]), out / "video-t2v-more.gif", fps=8)

    held = openmoji_clips(
        400, split="test", frames=pipe.codec.native_frames, size=pipe.image_size, seed=1
    )
    picks = [held.motions.index(m) for m in ("left", "down", "clockwise", "passing")]
    real = [held.clips[i] for i in picks]
    rec = tensor_to_clips(pipe.decode(pipe.encode(clips_to_tensor(np.stack(real)))))
    write_animation(side_by_side(real + list(rec)), out / "video-vae.gif", fps=8)

    i2v = [image_to_video(pipe, held.clips[i, 0], held.captions[i], seed=0).clips[0] for i in picks]
    write_animation(side_by_side(real + i2v), out / "video-i2v.gif", fps=8)

    recipe = pipe.recipe("a cat face moving left", seed=0)
    ends = []
    for seed, prompt in ((0, "a cat face moving left"), (1, "a cat face moving right")):
        r = pipe.recipe(prompt, seed=seed)
        noise, draw = pipe.initial_noise(r)
        ends.append(pipe.denoise(r, noise, draw))
    morph = interpolate_latents(pipe, ends[0], ends[1], 5, recipe)
    write_animation(side_by_side(morph.clips), out / "video-interpolate.gif", fps=8)
    for name in ("moves", "more"):
        print(f"wrote {out}/video-t2v-{name}.gif")
    print(f"wrote {out}/video-vae.gif, video-i2v.gif, video-interpolate.gif")
    print("held-out captions:", [held.captions[i] for i in picks])


if __name__ == "__main__":
    main()
