"""Images from text and from images: generate (or regenerate from saved noise), img2img,
inpaint and outpaint. Each endpoint checks what costs nothing, then queues the op."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from latentkit.server import schemas as s
from latentkit.server.errors import ApiError
from latentkit.server.jobs import Job
from latentkit.server.state import Studio, StudioDep

router = APIRouter()


@router.post("/api/generate", status_code=202, tags=["generate"])
async def generate(body: s.GenerateRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    """Text to image; with `noise` (an id from /api/invert), regenerate from that noise."""
    st = await st.for_model(body.model)
    if body.noise is not None:
        return await from_noise(st, body, wait)
    recipe = st.check_recipe(body, width=body.width, height=body.height)

    def run(job: Job) -> dict[str, Any]:
        return st.save_generation(st.pipe.run(recipe, job.progress_callback(st.preview_every)))

    return await st.submit("generate", run, wait)


async def from_noise(st: Studio, body: s.GenerateRequest, wait: bool) -> JSONResponse:
    from latentkit.ops.invert import regenerate
    from latentkit.outputs import load_latents

    z, meta = load_latents(st.storage.path(body.noise or "", "noise"))
    options = {"steps": body.steps, "cfg": body.cfg, "sampler": body.sampler}

    def run(job: Job) -> dict[str, Any]:
        result = regenerate(st.pipe, z, meta, body.prompt or None, **options)
        return st.save_generation(result, noise=body.noise)

    return await st.submit("generate", run, wait)


@router.post("/api/img2img", status_code=202, tags=["edit"])
async def img2img(body: s.Img2ImgRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    from latentkit.ops import img2img as op

    st = await st.for_model(body.model)
    src = st.source(body.image, body.keep_size)
    st.check_recipe(body, width=src.working[0], height=src.working[1])

    def run(job: Job) -> dict[str, Any]:
        progress = job.progress_callback(st.preview_every)
        result = op(st.pipe, src.path, body.prompt, strength=body.strength, callback=progress,
                    keep_size=body.keep_size, **body.recipe_args())  # fmt: skip
        return st.save_generation(result, source=body.image)

    return await st.submit("img2img", run, wait, src.notices)


@router.post("/api/inpaint", status_code=202, tags=["edit"])
async def inpaint(body: s.InpaintRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    from latentkit.ops import inpaint as op
    from latentkit.ops.inpaint import load_mask

    st = await st.for_model(body.model)
    src = st.source(body.image, body.keep_size)
    mask_path, mask_size = st.image(body.mask, "mask", as_is=body.keep_size)
    if mask_size != src.size:
        message = (f"mask is {mask_size[0]}x{mask_size[1]} but the image is {src.size[0]}x"
                   f"{src.size[1]}: paint the mask at the image's size")  # fmt: skip
        raise ApiError(400, message, "mask")
    load_mask(mask_path, src.size)  # refuses an all-black mask before queueing
    st.check_recipe(body, width=src.working[0], height=src.working[1])

    def run(job: Job) -> dict[str, Any]:
        progress = job.progress_callback(st.preview_every)
        result = op(st.pipe, src.path, mask_path, body.prompt, feather_px=body.feather,
                    keep_unmasked=body.keep_unmasked, keep_size=body.keep_size,
                    callback=progress, **body.recipe_args())  # fmt: skip
        return st.save_generation(result, source=body.image, mask=body.mask)

    return await st.submit("inpaint", run, wait, src.notices)


@router.post("/api/outpaint", status_code=202, tags=["edit"])
async def outpaint(body: s.OutpaintRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    from latentkit.ops import outpaint as op

    st = await st.for_model(body.model)
    src = st.source(body.image, body.keep_size)
    sides = check_sides(st, body, *src.working)
    st.check_recipe(body, width=src.working[0] + body.left + body.right,
                    height=src.working[1] + body.top + body.bottom)  # fmt: skip

    def run(job: Job) -> dict[str, Any]:
        progress = job.progress_callback(st.preview_every)
        result = op(st.pipe, src.path, body.prompt, **sides, keep_size=body.keep_size,
                    callback=progress, **body.recipe_args())  # fmt: skip
        return st.save_generation(result, source=body.image)

    return await st.submit("outpaint", run, wait, src.notices)


def check_sides(st: Studio, body: s.OutpaintRequest, width: int, height: int) -> dict[str, int]:
    """The growth per side: latent-cell multiples, at least one, the grown canvas (from the
    size the op works at) in limits."""
    from latentkit.ops.source import check_cell_multiple

    st.check_side("width", width + body.left + body.right)
    st.check_side("height", height + body.top + body.bottom)
    sides = {"left": body.left, "right": body.right, "top": body.top, "bottom": body.bottom}
    for name, value in sides.items():
        check_cell_multiple(name, value, st.pipe.latent_cell)
    if not any(sides.values()):
        raise ApiError(400, "outpaint needs at least one of left/right/top/bottom > 0", "left")
    return sides
