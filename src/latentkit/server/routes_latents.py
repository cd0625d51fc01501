"""Working in latent space: interpolate between keyframes, invert an image to its noise, encode
and decode latents, and map images by their latents."""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from latentkit.errors import InvalidArgument, LatentkitError
from latentkit.server import schemas as s
from latentkit.server.errors import ApiError
from latentkit.server.jobs import Job
from latentkit.server.state import Studio, StudioDep

router = APIRouter()


@router.post("/api/interpolate", status_code=202, tags=["generate"])
async def interpolate(
    body: s.InterpolateRequest, st: StudioDep, wait: bool = False
) -> JSONResponse:
    """Morph through keyframes; frames come back as PNG ids, plus a GIF/MP4 if asked."""
    from latentkit.ops import interpolate as op

    st = await st.for_model(body.model)
    args = {"negative_prompt": body.negative_prompt, "seed": body.seed, "steps": body.steps,
            "cfg": body.cfg, "sampler": body.sampler}  # fmt: skip
    recipe = st.pipe.recipe(body.prompt, **args)
    if recipe.sampler == "euler_a":
        raise ApiError(400, "interpolation needs a deterministic sampler: euler, heun or dpmpp_2m",
                       "sampler")  # fmt: skip
    st.check_work(recipe.width, recipe.height, recipe.steps, body.frames, "frames")
    specs, labels = keyframe_specs(st, body, (recipe.width, recipe.height))

    def run(job: Job) -> dict[str, Any]:
        result = op(st.pipe, specs, body.frames, prompt=body.prompt, even=body.even, **args)
        return save_morph(st, body, result, labels)

    return await st.submit("interpolate", run, wait)


def keyframe_specs(
    st: Studio, body: s.InterpolateRequest, size: tuple[int, int]
) -> tuple[list[str], list[str]]:
    """What the op takes per keyframe (a path, `seed:N` or a prompt) and what the recipe
    records (ids, never paths). Refused before queueing: a prompt that would read as a file or
    seed, and an image the model would not work on at the morph's `size`."""
    from latentkit.ops.source import looks_like_image

    specs, labels = [], []
    for i, key in enumerate(body.keyframes):
        if key.image is not None:
            field = f"keyframes.{i}.image"
            src = st.source(key.image, False, field)
            if src.working != size:
                raise ApiError(400, f"{field} {key.image!r} is {src.size[0]}x{src.size[1]}, "
                               f"which the model works on at {src.working[0]}x{src.working[1]}; "
                               f"keyframes are {size[0]}x{size[1]}: use a square image",
                               field)  # fmt: skip
            specs.append(str(src.path))
            labels.append(f"image:{key.image}")
        elif key.seed is not None:
            specs.append(f"seed:{key.seed}")
            labels.append(specs[-1])
        else:
            prompt = key.prompt or ""
            if looks_like_image(prompt) or prompt.startswith("seed:"):
                raise ApiError(400, f"keyframe prompt {prompt!r} reads as a file or seed; "
                               'send images as {"image": id}', f"keyframes.{i}.prompt")  # fmt: skip
            specs.append(prompt)
            labels.append(prompt)
    return specs, labels


def save_morph(st: Studio, body: s.InterpolateRequest, result: Any, labels: list[str]) -> dict:
    from latentkit.outputs import write_animation

    base = {**result.recipe.to_dict(), "n": 1, "model": result.model_id, "op": "interpolate",
            "fingerprint": result.fingerprint, "keyframes": labels}  # fmt: skip
    positions = result.extra["positions"]
    frames = [
        st.storage.save_image(im, {**base, "position": positions[i]}, "frame")
        for i, im in enumerate(result.images)
    ]
    out: dict[str, Any] = {"frames": frames, "positions": positions, "animation": None}
    if body.animation:
        anim_id, anim_path = st.storage.new_path("morph", f".{body.animation}")
        write_animation(result.images, anim_path, fps=body.fps)
        out["animation"] = anim_id
    return out


@router.post("/api/invert", status_code=202, tags=["edit"])
async def invert(body: s.InvertRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    """The noise that regenerates an image; pass its id as `noise` to /api/generate."""
    from latentkit.ops.latent_files import invert_image
    from latentkit.outputs import save_latents

    st = await st.for_model(body.model)
    src = st.source(body.image, False)
    path = src.path
    options = {"steps": body.steps, "sampler": body.sampler, "cfg": body.cfg}
    st.pipe.recipe(body.prompt, **options)

    def run(job: Job) -> dict[str, Any]:
        noise, _ = invert_image(st.pipe, path, body.prompt, body.image, **options)
        noise_id, noise_path = st.storage.new_path("noise", ".safetensors")
        save_latents(noise.tensor, noise_path, noise.recipe)
        return {"noise": noise_id, "shape": list(noise.tensor.shape)}

    return await st.submit("invert", run, wait, src.notices)


@router.post("/api/encode", status_code=202, tags=["latents"])
async def encode(body: s.EncodeRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    """Image -> latents (safetensors with the recipe in its header)."""
    from latentkit.ops.latent_files import encode_image
    from latentkit.outputs import save_latents

    st = await st.for_model(body.model)
    src = st.source(body.image, False)

    def run(job: Job) -> dict[str, Any]:
        latents = encode_image(st.pipe, src.path, body.image)
        latents_id, latents_path = st.storage.new_path("latents", ".safetensors")
        save_latents(latents.tensor, latents_path, latents.recipe)
        return {"latents": latents_id, "shape": list(latents.tensor.shape)}

    return await st.submit("encode", run, wait, src.notices)


@router.post("/api/decode", status_code=202, tags=["latents"])
async def decode(body: s.DecodeRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    from latentkit.ops.latent_files import check_latents, decode_latents
    from latentkit.outputs import load_latents

    st = await st.for_model(body.model)
    z, recipe = load_latents(st.storage.path(body.latents, "latents"))
    check_latents(st.pipe, z, body.latents)

    def run(job: Job) -> dict[str, Any]:
        images, meta = decode_latents(st.pipe, z, recipe, body.latents)
        saved = [st.storage.save_image(im, meta, "decoded") for im in images]
        return {"images": [{"id": image_id, "recipe": meta} for image_id in saved]}

    return await st.submit("decode", run, wait)


@router.post("/api/map", status_code=202, tags=["latents"])
async def latent_map(body: s.MapRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    """Images placed on a 2D map of their latents: an atlas plus each point's position
    (fractions of the atlas side), caption and, for gallery images, id."""
    st = await st.for_model(body.model)
    # the gallery is read now, so too few images is a 400 at once; the built-in set loads
    # in the job, where its cost belongs
    gallery = map_images(st, body) if body.source == "gallery" else None

    def run(job: Job) -> dict[str, Any]:
        return draw_map(st, body, *(gallery or map_images(st, body)))

    return await st.submit("map", run, wait)


def draw_map(st: Studio, body: s.MapRequest, data: Any, ids: list[str | None]) -> dict[str, Any]:
    from latentkit.ops.latent_map import atlas_positions, map_recipe
    from latentkit.ops.latent_map import latent_map as op

    atlas, coords, _ = op(st.pipe, data, body.method, body.size, body.thumb)
    atlas_id = st.storage.save_image(atlas, map_recipe(st.pipe, body.source, body.method), "map")
    centre = (atlas_positions(coords, body.size, body.thumb) + body.thumb / 2) / body.size
    points = [
        {"name": n, "caption": c, "id": i, "x": float(x), "y": float(y)}
        for n, c, i, (x, y) in zip(data.names, data.captions, ids, centre, strict=True)
    ]
    return {"atlas": atlas_id, "points": points, "size": body.size}


def map_images(st: Studio, body: s.MapRequest) -> tuple[Any, list[str | None]]:
    """The images a map shows: the gallery's generated images at the model's size (caption =
    prompt), or the built-in training set."""
    import numpy as np

    from latentkit.data.images import ImageSet, load_image
    from latentkit.outputs import read_png_recipe

    size = st.pipe.image_size
    if body.source == "openmoji":
        from latentkit.data.sources import training_images

        data = training_images("openmoji", size)
        data = data.subset(spread_over_groups(data.names, body.limit))
        return data, [None] * len(data)
    arrays, captions, ids = [], [], []
    for path in st.storage.images(body.limit):
        try:
            recipe = read_png_recipe(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = load_image(path)
        except LatentkitError:
            continue
        if img.size != (size, size) or recipe.get("op") == "map":
            continue
        arrays.append(np.asarray(img))
        captions.append(str(recipe.get("prompt", "")))
        ids.append(path.name)
    if len(arrays) < 3:
        raise InvalidArgument(
            f"source: a map needs at least 3 gallery images of {size}x{size}, found {len(arrays)}"
        )
    return ImageSet(np.stack(arrays), captions, ids), ids


def spread_over_groups(names: list[str], limit: int) -> list[int]:
    """Up to `limit` indices taken round-robin over the names' groups (an emoji's leading code
    point, by blocks of 256: flags, faces, animals...), in order within each: the set is sorted
    by code point, so its first 200 would be nearly all flags."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.split("-")[0][:-2].upper(), []).append(i)
    rows = [iter(g) for g in groups.values()]
    picked: list[int] = []
    while rows and len(picked) < limit:
        for row in list(rows):
            index = next(row, None)
            if index is None:
                rows.remove(row)
            elif len(picked) < limit:
                picked.append(index)
    return sorted(picked)
