"""The endpoints: each translates JSON into one call on the pipeline or an op, as a job.

Checks that cost nothing (ids, image sizes, the recipe) run before the job is queued, so bad
input is answered at once; the work itself runs on the queue's workers.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any, Literal

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from PIL import Image

from latentkit.errors import InvalidArgument, LatentkitError
from latentkit.server import schemas as s
from latentkit.server.app import STATIC, ApiError, Studio
from latentkit.server.guard import TOKEN_COOKIE
from latentkit.server.jobs import FINISHED, Job
from latentkit.server.storage import MEDIA_TYPES, check_id


def add_routes(app: FastAPI, st: Studio) -> None:
    pipe, storage = st.pipe, st.storage

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> FileResponse:
        page = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
        token = request.query_params.get("token")
        if token:  # the guard has checked it; the page's own requests then carry it as a cookie
            page.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return page

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    # -- model, files, recipes -----------------------------------------------------------------

    @app.get("/api/model", tags=["model"])
    async def model_info() -> dict[str, Any]:
        """The served model: sizes the page offers, samplers, defaults, how it was trained."""
        from dataclasses import asdict

        from latentkit.diffusion.samplers import SAMPLERS

        parts, text = pipe.components, pipe.text_encoder
        vpipe = await asyncio.to_thread(st.video_pipe)
        return {
            "model": pipe.model_id,
            "family": parts.family,
            "title": parts.title,
            "description": dict(parts.description),
            "image_size": pipe.image_size,
            "latent_cell": pipe.latent_cell,
            "factor": pipe.factor,
            "latent_channels": pipe.codec.latent_channels,
            "text": {"name": text.name, "dim": text.token_dim, "max_tokens": text.max_tokens},
            "can_generate": pipe.network is not None,
            "samplers": list(SAMPLERS),
            "defaults": asdict(pipe.defaults),
            "training": parts.bundle.training if parts.bundle is not None else {},
            "fingerprint": pipe.fingerprint(),
            "video": vpipe is not None,
            "video_model": video_info(vpipe),
        }

    @app.post("/api/uploads", status_code=201, tags=["files"])
    async def upload(
        file: UploadFile = File(...), kind: Literal["upload", "mask"] = "upload"
    ) -> dict[str, Any]:
        """Store a PNG, JPEG or WebP as sent (a PNG keeps its recipe); answers its id.
        `kind=mask` keeps painted masks out of the gallery."""
        data = await file.read(st.max_upload_bytes + 1)
        if len(data) > st.max_upload_bytes:
            raise ApiError(413, too_large_message(len(data), st.max_upload_bytes), "file")
        file_id, (width, height) = storage.save_upload(data, "file", kind)
        return {"id": file_id, "width": width, "height": height}

    @app.get("/api/files/{file_id}/recipe", tags=["files"])
    async def get_recipe(file_id: str) -> dict[str, Any]:
        """The recipe a PNG carries in its metadata (what made it, to reuse or replay)."""
        from latentkit.outputs import read_png_recipe

        path = storage.image_path(file_id, "file_id")
        try:
            return read_png_recipe(path)
        except LatentkitError:
            raise ApiError(
                400, f"file_id {file_id!r} carries no latentkit recipe", "file_id"
            ) from None

    @app.get("/api/files/{file_id:path}", tags=["files"])
    async def get_file(file_id: str) -> FileResponse:
        """Any stored output by id: PNG, GIF, MP4 or safetensors."""
        path = storage.path(file_id, "file_id")
        media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/gallery", tags=["files"])
    async def gallery(limit: int = 100) -> list[dict[str, Any]]:
        """Stored PNGs, newest first, with their recipes."""
        from latentkit.outputs import read_png_recipe

        out = []
        for path in storage.images(max(1, min(limit, 1000))):
            try:
                recipe = read_png_recipe(path)
            except LatentkitError:
                recipe = None
            out.append({"id": path.name, "recipe": recipe})
        return out

    # -- generation and editing ----------------------------------------------------------------

    @app.post("/api/generate", status_code=202, tags=["generate"])
    async def generate(body: s.GenerateRequest, wait: bool = False) -> JSONResponse:
        """Text to image; with `noise` (an id from /api/invert), regenerate from that noise."""
        st.check_model(body)
        if body.noise is not None:
            return await from_noise(body, wait)
        recipe = st.check_recipe(body, width=body.width, height=body.height)

        def run(job: Job) -> dict[str, Any]:
            return st.save_generation(pipe.run(recipe, job.progress_callback(st.preview_every)))

        return await st.submit("generate", run, wait)

    async def from_noise(body: s.GenerateRequest, wait: bool) -> JSONResponse:
        from latentkit.ops.invert import regenerate
        from latentkit.outputs import load_latents

        path = storage.path(body.noise or "", "noise")
        z, meta = load_latents(path)
        options = {"steps": body.steps, "cfg": body.cfg, "sampler": body.sampler}

        def run(job: Job) -> dict[str, Any]:
            return st.save_generation(
                regenerate(pipe, z, meta, body.prompt or None, **options), noise=body.noise
            )

        return await st.submit("generate", run, wait)

    @app.post("/api/img2img", status_code=202, tags=["edit"])
    async def img2img(body: s.Img2ImgRequest, wait: bool = False) -> JSONResponse:
        from latentkit.ops import img2img as op

        st.check_model(body)
        path, _ = st.image(body.image)
        st.check_recipe(body)

        def run(job: Job) -> dict[str, Any]:
            result = op(
                pipe,
                path,
                body.prompt,
                strength=body.strength,
                callback=job.progress_callback(st.preview_every),
                **body.recipe_args(),
            )
            return st.save_generation(result, source=body.image)

        return await st.submit("img2img", run, wait)

    @app.post("/api/inpaint", status_code=202, tags=["edit"])
    async def inpaint(body: s.InpaintRequest, wait: bool = False) -> JSONResponse:
        from latentkit.ops import inpaint as op
        from latentkit.ops.inpaint import load_mask

        st.check_model(body)
        path, size = st.image(body.image)
        mask_path, mask_size = st.image(body.mask, "mask")
        if mask_size != size:
            raise ApiError(
                400,
                f"mask is {mask_size[0]}x{mask_size[1]} but the image is "
                f"{size[0]}x{size[1]}: paint the mask at the image's size",
                "mask",
            )
        load_mask(mask_path, size)  # refuses an all-black mask before queueing
        st.check_recipe(body)

        def run(job: Job) -> dict[str, Any]:
            result = op(
                pipe,
                path,
                mask_path,
                body.prompt,
                feather_px=body.feather,
                keep_unmasked=body.keep_unmasked,
                callback=job.progress_callback(st.preview_every),
                **body.recipe_args(),
            )
            return st.save_generation(result, source=body.image, mask=body.mask)

        return await st.submit("inpaint", run, wait)

    @app.post("/api/outpaint", status_code=202, tags=["edit"])
    async def outpaint(body: s.OutpaintRequest, wait: bool = False) -> JSONResponse:
        from latentkit.ops import outpaint as op
        from latentkit.ops.source import check_cell_multiple

        st.check_model(body)
        path, (width, height) = st.image(body.image)
        st.check_side("width", width + body.left + body.right)  # the grown canvas
        st.check_side("height", height + body.top + body.bottom)
        sides = {"left": body.left, "right": body.right, "top": body.top, "bottom": body.bottom}
        for name, value in sides.items():
            check_cell_multiple(name, value, pipe.latent_cell)
        if not any(sides.values()):
            raise ApiError(400, "outpaint needs at least one of left/right/top/bottom > 0", "left")
        st.check_recipe(body)

        def run(job: Job) -> dict[str, Any]:
            result = op(
                pipe,
                path,
                body.prompt,
                **sides,
                callback=job.progress_callback(st.preview_every),
                **body.recipe_args(),
            )
            return st.save_generation(result, source=body.image)

        return await st.submit("outpaint", run, wait)

    @app.post("/api/interpolate", status_code=202, tags=["generate"])
    async def interpolate(body: s.InterpolateRequest, wait: bool = False) -> JSONResponse:
        """Morph through keyframes; frames come back as PNG ids, plus a GIF/MP4 if asked."""
        from latentkit.ops import interpolate as op
        from latentkit.ops.source import looks_like_image
        from latentkit.outputs import write_animation

        st.check_model(body)
        specs, labels = [], []
        for i, key in enumerate(body.keyframes):
            if key.image is not None:
                specs.append(str(st.image(key.image, f"keyframes.{i}.image")[0]))
                labels.append(f"image:{key.image}")
            elif key.seed is not None:
                specs.append(f"seed:{key.seed}")
                labels.append(specs[-1])
            else:
                prompt = key.prompt or ""
                if looks_like_image(prompt) or prompt.startswith("seed:"):
                    raise ApiError(
                        400,
                        f"keyframe prompt {prompt!r} reads as a file or seed; "
                        'send images as {"image": id}',
                        f"keyframes.{i}.prompt",
                    )
                specs.append(prompt)
                labels.append(prompt)
        args = {
            "negative_prompt": body.negative_prompt,
            "seed": body.seed,
            "steps": body.steps,
            "cfg": body.cfg,
            "sampler": body.sampler,
        }
        recipe = pipe.recipe(body.prompt, **args)
        if recipe.sampler == "euler_a":
            raise ApiError(
                400,
                "interpolation needs a deterministic sampler: euler, heun or dpmpp_2m",
                "sampler",
            )

        def run(job: Job) -> dict[str, Any]:
            result = op(pipe, specs, body.frames, prompt=body.prompt, even=body.even, **args)
            base = {
                **result.recipe.to_dict(),
                "n": 1,
                "model": result.model_id,
                "fingerprint": result.fingerprint,
                "keyframes": labels,
                "op": "interpolate",
            }
            positions = result.extra["positions"]
            frames = [
                storage.save_image(im, {**base, "position": positions[i]}, "frame")
                for i, im in enumerate(result.images)
            ]
            out: dict[str, Any] = {"frames": frames, "positions": positions, "animation": None}
            if body.animation:
                anim_id, anim_path = storage.new_path("morph", f".{body.animation}")
                write_animation(result.images, anim_path, fps=body.fps)
                out["animation"] = anim_id
            return out

        return await st.submit("interpolate", run, wait)

    @app.post("/api/invert", status_code=202, tags=["edit"])
    async def invert(body: s.InvertRequest, wait: bool = False) -> JSONResponse:
        """The noise that regenerates an image; pass its id as `noise` to /api/generate."""
        from latentkit.ops import invert as op
        from latentkit.outputs import save_latents

        st.check_model(body)
        path, _ = st.image(body.image)
        pipe.recipe(body.prompt, steps=body.steps, sampler=body.sampler, cfg=body.cfg)

        def run(job: Job) -> dict[str, Any]:
            z, recipe = op(
                pipe, path, body.prompt, steps=body.steps, sampler=body.sampler, cfg=body.cfg
            )
            noise_id, noise_path = storage.new_path("noise", ".safetensors")
            save_latents(
                z, noise_path, {**recipe.to_dict(), "source": body.image, "model": pipe.model_id}
            )
            return {"noise": noise_id, "shape": list(z.shape)}

        return await st.submit("invert", run, wait)

    @app.get("/api/directions", tags=["directions"])
    async def directions() -> list[dict[str, Any]]:
        from latentkit.ops.directions import Direction

        out = []
        for name in storage.direction_names():
            d = Direction.load(storage.direction_path(name))
            out.append({"name": name, "kind": d.kind, "meta": d.meta})
        return out

    @app.post("/api/directions", status_code=202, tags=["directions"])
    async def find_direction(body: s.DirectionRequest, wait: bool = False) -> JSONResponse:
        """A text direction from two prompt sets, saved under `name` for /api/edit."""
        from latentkit.ops.directions import from_prompts

        st.check_model(body)

        def run(job: Job) -> dict[str, Any]:
            direction = from_prompts(pipe, body.positive, body.negative, body.name)
            direction.save(storage.directions / f"{body.name}.safetensors")
            return {"name": body.name, "kind": direction.kind}

        return await st.submit("direction", run, wait)

    @app.post("/api/edit", status_code=202, tags=["directions"])
    async def edit(body: s.EditRequest, wait: bool = False) -> JSONResponse:
        """Move an image along a saved direction, one image per amount (a slider's stops)."""
        from latentkit.ops.directions import Direction, check_direction, edit_image

        st.check_model(body)
        path, _ = st.image(body.image)
        direction = Direction.load(storage.direction_path(body.direction))
        check_direction(pipe, direction)
        prompt = body.prompt if body.prompt is not None else st.prompt_of(path)
        if body.steps is not None:
            pipe.recipe(prompt, steps=body.steps)

        def run(job: Job) -> dict[str, Any]:
            rows = edit_image(pipe, path, direction, body.amounts, prompt, body.steps)
            images = []
            for amount, row in zip(body.amounts, rows, strict=True):
                recipe = {
                    "op": "edit",
                    "source": body.image,
                    "direction": body.direction,
                    "amount": amount,
                    "prompt": prompt,
                    "model": pipe.model_id,
                }
                image_id = storage.save_image(Image.fromarray(row), recipe, "edit")
                images.append({"id": image_id, "amount": amount, "recipe": recipe})
            return {"images": images}

        return await st.submit("edit", run, wait)

    # -- latents -------------------------------------------------------------------------------

    @app.post("/api/encode", status_code=202, tags=["latents"])
    async def encode(body: s.EncodeRequest, wait: bool = False) -> JSONResponse:
        """Image -> latents (safetensors with the recipe in its header)."""
        from latentkit.ops.source import prepare
        from latentkit.outputs import save_latents

        st.check_model(body)
        path, _ = st.image(body.image)

        def run(job: Job) -> dict[str, Any]:
            img, pixels = prepare(pipe, path)
            latents = pipe.encode(pixels)
            latents_id, latents_path = storage.new_path("latents", ".safetensors")
            save_latents(
                latents,
                latents_path,
                {
                    "source": body.image,
                    "height": img.height,
                    "width": img.width,
                    "model": pipe.model_id,
                    "fingerprint": pipe.fingerprint(),
                },
            )
            return {"latents": latents_id, "shape": list(latents.shape)}

        return await st.submit("encode", run, wait)

    @app.post("/api/decode", status_code=202, tags=["latents"])
    async def decode(body: s.DecodeRequest, wait: bool = False) -> JSONResponse:
        from latentkit.data.images import tensor_to_pil
        from latentkit.outputs import load_latents

        st.check_model(body)
        z, recipe = load_latents(storage.path(body.latents, "latents"))
        if z.shape[1] != pipe.codec.latent_channels:
            raise ApiError(
                400,
                f"latents have {z.shape[1]} channels; this model's codec takes "
                f"{pipe.codec.latent_channels}",
                "latents",
            )

        def run(job: Job) -> dict[str, Any]:
            images = tensor_to_pil(pipe.decode(z))
            meta = {**recipe, "decoded_with": pipe.model_id, "latents": body.latents}
            return {
                "images": [
                    {"id": storage.save_image(im, meta, "decoded"), "recipe": meta} for im in images
                ]
            }

        return await st.submit("decode", run, wait)

    @app.post("/api/map", status_code=202, tags=["latents"])
    async def latent_map(body: s.MapRequest, wait: bool = False) -> JSONResponse:
        """Images placed on a 2D map of their latents: an atlas plus each point's position
        (fractions of the atlas side), caption and, for gallery images, id."""
        from latentkit.ops.latent_map import atlas_positions
        from latentkit.ops.latent_map import latent_map as op

        st.check_model(body)
        # the gallery is read now, so too few images is a 400 at once; the built-in set loads
        # in the job, where its cost belongs
        gallery = map_images(st, body) if body.source == "gallery" else None

        def run(job: Job) -> dict[str, Any]:
            data, ids = gallery or map_images(st, body)
            atlas, coords, _ = op(pipe, data, body.method, body.size, body.thumb)
            atlas_id = storage.save_image(
                atlas,
                {"op": "map", "images": body.source, "method": body.method, "model": pipe.model_id},
                "map",
            )
            centre = (atlas_positions(coords, body.size, body.thumb) + body.thumb / 2) / body.size
            points = [
                {"name": n, "caption": c, "id": i, "x": float(x), "y": float(y)}
                for n, c, i, (x, y) in zip(data.names, data.captions, ids, centre, strict=True)
            ]
            return {"atlas": atlas_id, "points": points, "size": body.size}

        return await st.submit("map", run, wait)

    @app.post("/api/video", status_code=202, tags=["video"])
    async def video(body: s.VideoRequest, wait: bool = False) -> JSONResponse:
        """Text (and optionally a first frame, `image`) to a GIF clip, as `latentkit video`
        makes it: the recipe rides in the GIF's comment and in a `.gif.json` sidecar."""
        from latentkit.data.images import load_image
        from latentkit.ops import image_to_video
        from latentkit.outputs import save_clip

        vpipe = await asyncio.to_thread(st.require_video)
        if body.model is not None and body.model != vpipe.model_id:
            raise ApiError(400, f"unknown model {body.model!r}; this server's video model is "
                           f"{vpipe.model_id!r}", "model")  # fmt: skip
        first = None
        if body.image is not None:  # another size is scaled and centre-cropped, as in the CLI
            path, _ = st.image(body.image)
            first = load_image(path)
        args = {
            "negative_prompt": body.negative_prompt,
            "steps": body.steps,
            "cfg": body.cfg,
            "sampler": body.sampler,
            "fps": body.fps,
        }
        with warnings.catch_warnings():  # the rounded frame count is in the answer
            warnings.simplefilter("ignore")
            recipe = vpipe.recipe(body.prompt, seed=body.seed, frames=body.frames, **args)

        def run(job: Job) -> dict[str, Any]:
            progress = job.progress_callback(st.preview_every)
            if first is None:
                result = vpipe.run(recipe, progress)
            else:  # frames already rounded: no warning from a worker
                result = image_to_video(vpipe, first, body.prompt, source=body.image,
                                        callback=progress, **{**args, "seed": recipe.seed,
                                                              "frames": recipe.frames})  # fmt: skip
            meta = {**result.recipe_of(0), "op": "video"}
            clip_id, clip_path = storage.new_path("video", ".gif")
            save_clip(result.clips[0], clip_path, meta, result.recipe.fps)
            return {
                "video": clip_id,
                "sidecar": f"{clip_id}.json",
                "frames": len(result.clips[0]),
                "recipe": meta,
            }

        return await st.submit("video", run, wait)

    # -- jobs ----------------------------------------------------------------------------------

    def find_job(job_id: str) -> Job:
        job = st.queue.get(check_id(job_id, "job_id"))
        if job is None:
            raise ApiError(
                404,
                f"job_id {job_id!r} names no job (finished jobs are kept for a "
                "while, then forgotten)",
                "job_id",
            )
        return job

    @app.get("/api/jobs", tags=["jobs"])
    async def jobs() -> list[dict[str, Any]]:
        return [j.public() for j in st.queue.list()]

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    async def job_status(job_id: str) -> dict[str, Any]:
        """Status, step/total, result (image ids) or error; the latent preview is its own URL."""
        return find_job(job_id).public()

    @app.get("/api/jobs/{job_id}/preview", tags=["jobs"])
    async def job_preview(job_id: str) -> Response:
        job = find_job(job_id)
        if job.preview_png is None:
            raise ApiError(404, f"job {job_id} has no preview yet", "job_id")
        return Response(
            job.preview_png, media_type="image/png", headers={"Cache-Control": "no-store"}
        )

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    async def cancel(job_id: str) -> dict[str, Any]:
        """Queued jobs never start; a running one stops at its next sampler step."""
        return st.queue.cancel(find_job(job_id)).public()

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"])
    async def events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: one `progress` event per change, then `end` when finished."""
        job = find_job(job_id)

        async def stream() -> Any:
            seen = -1
            while True:
                if job.version != seen:
                    seen = job.version
                    finished = job.status in FINISHED
                    kind = "end" if finished else "progress"
                    yield f"event: {kind}\ndata: {json.dumps(job.public())}\n\n"
                    if finished:
                        return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )


def video_info(vpipe: Any) -> dict[str, Any] | None:
    """What the page's Video tab offers: the clip size and the video model's defaults."""
    if vpipe is None:
        return None
    from dataclasses import asdict

    defaults = {**asdict(vpipe.defaults), "frames": vpipe.codec.native_frames}
    return {"model": vpipe.model_id, "size": vpipe.image_size, "defaults": defaults}


def too_large_message(size: int, cap: int) -> str:
    return f"file is {size}+ bytes, over the server's upload cap of {cap} bytes"


def map_images(st: Studio, body: s.MapRequest) -> tuple[Any, list[str | None]]:
    """The images a map shows: the gallery's generated images at the model's size (caption =
    prompt), or the built-in training set."""
    import numpy as np

    from latentkit.data.images import ImageSet, load_image
    from latentkit.outputs import read_png_recipe

    size = st.pipe.image_size
    if body.source == "openmoji":
        from latentkit.train.tasks import training_images

        data = training_images("openmoji", size)
        data = data.subset(np.arange(min(body.limit, len(data))))
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
