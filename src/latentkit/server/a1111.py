"""AUTOMATIC1111's web API (`/sdapi/v1/...`) on the same server, so the hundreds of tools that
speak it (the `webuiapi` client, Krita and Photoshop plug-ins, bots) drive latentkit unchanged.

Field names and answers follow AUTOMATIC1111: base64 PNGs, `info` as a JSON string with `seed`
and `all_seeds`, sampler labels such as "Euler a". What latentkit cannot do (hires fix, face
restoration, variation seeds, scripts) is refused with the field named, never ignored.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from latentkit.diffusion.samplers import SAMPLER_INFO, sampler_by_a1111_name
from latentkit.errors import InvalidArgument
from latentkit.infotext import a1111_parameters
from latentkit.pipeline import SamplingOptions
from latentkit.server.a1111_images import filled, mask_for, sized
from latentkit.server.interop import (
    decode_image,
    png_base64,
    run_and_wait,
    stored_images,
)
from latentkit.server.jobs import DONE, QUEUED, RUNNING, Job
from latentkit.server.state import StudioDep

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111 API"])
UNSUPPORTED = {"enable_hr": "hires fix", "restore_faces": "face restoration",
               "tiling": "tiling", "script_name": "scripts"}  # fmt: skip
FILLS = ("fill", "original", "latent noise", "latent nothing")


class Txt2Img(BaseModel):
    """AUTOMATIC1111's txt2img fields that latentkit uses; the rest of what clients send (eta,
    s_churn, hr_* with enable_hr off ...) is accepted and has no effect, as there."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    prompt: str = Field(default="", max_length=2000)
    negative_prompt: str = Field(default="", max_length=2000)
    seed: int = -1
    subseed_strength: float = 0.0
    sampler_name: str | None = None
    sampler_index: str | None = None
    batch_size: int = Field(default=1, ge=1, le=16)
    n_iter: int = Field(default=1, ge=1, le=16)
    steps: int = Field(default=20, ge=1, le=500)
    cfg_scale: float = Field(default=7.0, ge=0.0, le=50.0)
    distilled_cfg_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    width: int | None = Field(default=None, ge=1, le=2048)
    height: int | None = Field(default=None, ge=1, le=2048)
    enable_hr: bool = False
    restore_faces: bool | None = False
    tiling: bool | None = False
    script_name: str | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True


class Img2Img(Txt2Img):
    init_images: list[str] = Field(min_length=1, max_length=1)
    denoising_strength: float = Field(default=0.75, ge=0.0, le=1.0)
    resize_mode: int = Field(default=0, ge=0, le=3)
    mask: str | None = None
    mask_blur: int = Field(default=4, ge=0, le=256)
    inpainting_fill: int = Field(default=1, ge=0, le=3)
    inpainting_mask_invert: int = Field(default=0, ge=0, le=1)
    include_init_images: bool = False


def check_supported(body: Txt2Img) -> None:
    for name, what in UNSUPPORTED.items():
        if getattr(body, name):
            raise InvalidArgument(f"{name}: {what} is not something latentkit does; turn it off")
    if body.subseed_strength:
        raise InvalidArgument("subseed_strength: variation seeds are not supported; use 0")


def our_sampler(body: Txt2Img) -> str | None:
    label = body.sampler_name or body.sampler_index
    if not label:
        return None
    name = label if label in SAMPLER_INFO else sampler_by_a1111_name(label)
    if name is None:
        choices = ", ".join(info.a1111 for info in SAMPLER_INFO.values())
        raise InvalidArgument(f"sampler_name {label!r} is not available; choose one of: {choices}")
    return name


def recipe_args(body: Txt2Img) -> dict[str, Any]:
    """generate's keyword arguments from AUTOMATIC1111's fields (seed -1: a random one)."""
    seed = body.seed if body.seed >= 0 else secrets.randbelow(2**32)
    return SamplingOptions(body.negative_prompt, seed, body.steps, body.cfg_scale,
                           our_sampler(body), body.batch_size * body.n_iter,
                           body.distilled_cfg_scale).args()  # fmt: skip


def answer(st: Any, body: Txt2Img, job: Job) -> dict[str, Any]:
    """AUTOMATIC1111's response: images as base64 PNGs, the request, and `info` as JSON text."""
    images = stored_images(st, job)
    recipes = [recipe for _, recipe, _ in images]
    first = recipes[0] if recipes else {}
    info = {
        "prompt": body.prompt,
        "all_prompts": [body.prompt] * len(recipes),
        "negative_prompt": body.negative_prompt,
        "all_negative_prompts": [body.negative_prompt] * len(recipes),
        "seed": first.get("seed"),
        "all_seeds": [r["seed"] for r in recipes],
        "subseed": -1,
        "all_subseeds": [-1] * len(recipes),
        "subseed_strength": 0,
        "width": first.get("width"),
        "height": first.get("height"),
        "sampler_name": SAMPLER_INFO[first["sampler"]].a1111 if first else None,
        "cfg_scale": first.get("cfg"),
        "steps": first.get("steps"),
        "batch_size": body.batch_size,
        "restore_faces": False,
        "sd_model_name": st.pipe.model_id,
        "sd_model_hash": None,
        "denoising_strength": first.get("strength"),
        "infotexts": [a1111_parameters(r) for r in recipes],
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
        "index_of_first_image": 0,
        "interrupted": job.status != DONE,
        "latentkit_ids": [file_id for _, _, file_id in images],
    }
    return {
        "images": [png_base64(data) for data, _, _ in images] if body.send_images else [],
        "parameters": body.model_dump(exclude={"init_images", "mask"}),
        "info": json.dumps(info),
    }


@router.post("/txt2img")
async def txt2img(body: Txt2Img, st: StudioDep) -> dict[str, Any]:
    check_supported(body)
    st = await st.for_model(body.override_settings.get("sd_model_checkpoint"))
    recipe = st.check_recipe_args(
        body.prompt, recipe_args(body), width=body.width, height=body.height
    )

    def run(job: Job) -> dict[str, Any]:
        return st.save_generation(st.pipe.run(recipe, job.progress_callback(st.preview_every)))

    return answer(st, body, await run_and_wait(st, "txt2img", run))


@router.post("/img2img")
async def img2img(body: Img2Img, st: StudioDep) -> dict[str, Any]:
    """img2img, or inpainting when a mask is given (`denoising_strength` below 1 keeps the
    masked content as a start, as AUTOMATIC1111's `original` fill does)."""
    from latentkit.ops import img2img as edit
    from latentkit.ops import inpaint

    check_supported(body)
    st = await st.for_model(body.override_settings.get("sd_model_checkpoint"))
    image = sized(decode_image(body.init_images[0], "init_images", st.max_upload_bytes), body)
    args = recipe_args(body)
    st.check_recipe_args(body.prompt, args, width=image.width, height=image.height)
    mask = mask_for(body, image, st.max_upload_bytes)
    if mask is not None and mask.getbbox() is None:
        raise InvalidArgument("mask is all black: nothing to inpaint")
    strength = 1.0 if body.inpainting_fill == 2 else body.denoising_strength
    options = {"keep_size": True, "strength": strength}

    def run(job: Job) -> dict[str, Any]:
        callback = job.progress_callback(st.preview_every)
        if mask is None:
            result = edit(st.pipe, image, body.prompt, callback=callback, **options, **args)
        else:
            start = filled(image, mask, body.inpainting_fill)
            result = inpaint(st.pipe, start, mask, body.prompt, feather_px=body.mask_blur,
                             callback=callback, **options, **args)  # fmt: skip
        return st.save_generation(result)

    return answer(st, body, await run_and_wait(st, "img2img", run))


@router.get("/sd-models")
async def sd_models(st: StudioDep) -> list[dict[str, Any]]:
    """The served model and, with `serve --models DIR`, every model in that folder."""
    return [{"title": name, "model_name": name, "hash": None, "sha256": None,
             "filename": name, "config": None} for name in st.models.names()]  # fmt: skip


@router.get("/samplers")
async def samplers() -> list[dict[str, Any]]:
    return [{"name": i.a1111, "aliases": [i.name, i.comfy], "options": {}}
            for i in SAMPLER_INFO.values()]  # fmt: skip


@router.get("/options")
async def get_options(st: StudioDep) -> dict[str, Any]:
    current = st.models.current or st.pipe.model_id
    return {"sd_model_checkpoint": current, "samples_format": "png"}


@router.post("/options")
async def set_options(options: dict[str, Any], st: StudioDep) -> None:
    """`sd_model_checkpoint` switches the model of requests that name none (loading it now);
    other options have no counterpart here and are ignored."""
    name = options.get("sd_model_checkpoint")
    if name is not None:
        await st.for_model(str(name))
        st.models.current = None if name == st.pipe.model_id else str(name)


@router.get("/progress")
async def progress(st: StudioDep) -> dict[str, Any]:
    """The running job's progress and its latest preview (base64 PNG)."""
    jobs = st.queue.list()
    running = [j for j in jobs if j.status == RUNNING]
    job = running[-1] if running else None
    done = job.step / job.total if job is not None and job.total else 0.0
    elapsed = time.time() - job.created if job is not None else 0.0
    state = {
        "skipped": False,
        "interrupted": bool(job and job.cancel_requested),
        "job": job.id if job else "",
        "job_count": sum(j.status in (QUEUED, RUNNING) for j in jobs),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)) if job else "0",
        "job_no": 0,
        "sampling_step": job.step if job else 0,
        "sampling_steps": job.total if job else 0,
    }
    preview = job.preview_png if job is not None else None
    return {
        "progress": done,
        "eta_relative": elapsed / done - elapsed if done else 0.0,
        "state": state,
        "current_image": png_base64(preview) if preview else None,
        "textinfo": None,
    }


@router.post("/interrupt")
async def interrupt(st: StudioDep) -> dict[str, Any]:
    """Stop the running job at its next step (what AUTOMATIC1111's Interrupt does)."""
    for job in st.queue.list():
        if job.status == RUNNING:
            st.queue.cancel(job)
    return {}


@router.post("/skip")
async def skip(st: StudioDep) -> dict[str, Any]:
    return await interrupt(st)


@router.get("/scripts")
async def scripts() -> dict[str, list[str]]:
    return {"txt2img": [], "img2img": []}
