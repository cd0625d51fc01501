"""OpenAI's images API (`/v1/images/generations`, `/v1/images/edits`, `/v1/models`) on the same
server, so code written for the `openai` client runs against a local model by changing its
`base_url` (the API key is the server's token, if it has one).

Edits follow OpenAI's mask convention: the mask's fully transparent pixels are the ones to
change; without a mask, the image's own transparent pixels are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from latentkit.errors import InvalidArgument, LatentkitError
from latentkit.pipeline import SamplingOptions
from latentkit.server.errors import ApiError, outputs_root, to_api_error
from latentkit.server.interop import (
    open_image,
    png_base64,
    run_and_wait,
    stored_images,
)
from latentkit.server.jobs import Job
from latentkit.server.state import StudioDep


class OpenAIErrors(APIRoute):
    """Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, which its
    clients turn into exceptions carrying the message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
                param = ".".join(str(p) for p in first["loc"] if p not in ("body", "query"))
                return openai_error(422, f"{param}: {first['msg']}", param or None)
            except HTTPException as e:
                return openai_error(e.status_code, str(e.detail), None)
            except (LatentkitError, ApiError) as e:  # the studio's mapping, paths kept out
                err = to_api_error(e, outputs_root(request))
                return openai_error(err.status, err.message, err.field)

        return route


def openai_error(status: int, message: str, param: str | None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"message": message, "type": kind, "param": param, "code": None}
    return JSONResponse({"error": body}, status_code=status)


router = APIRouter(prefix="/v1", tags=["OpenAI images API"], route_class=OpenAIErrors)
Format = Literal["b64_json", "url"]


class Generations(BaseModel):
    """OpenAI's fields; quality, style, user, background and the like are accepted and have
    no counterpart here."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = None
    n: int = Field(default=1, ge=1, le=16)
    size: str | None = None
    response_format: Format = "b64_json"


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    """ "WxH" (or "auto"/None: the model's own size)."""
    if size is None or size == "auto":
        return None, None
    width, x, height = size.partition("x")
    if not x or not width.isdigit() or not height.isdigit():
        raise InvalidArgument(f"size must be WIDTHxHEIGHT such as 64x64, or auto; got {size!r}")
    return int(width), int(height)


def images_answer(request: Request, st: Any, job: Job, response_format: str) -> dict[str, Any]:
    data = []
    for png, recipe, file_id in stored_images(st, job):
        if response_format == "url":
            data.append({"url": str(request.url_for("get_file", file_id=file_id))})
        else:
            data.append({"b64_json": png_base64(png)})
        data[-1]["revised_prompt"] = recipe.get("prompt")
    return {"created": int(job.created), "data": data}


@router.post("/images/generations")
async def generations(body: Generations, request: Request, st: StudioDep) -> dict[str, Any]:
    st = await st.for_model(body.model)
    width, height = parse_size(body.size)
    recipe = st.check_recipe_args(
        body.prompt, SamplingOptions(n=body.n).args(), width=width, height=height
    )

    def run(job: Job) -> dict[str, Any]:
        return st.save_generation(st.pipe.run(recipe, job.progress_callback(st.preview_every)))

    job = await run_and_wait(st, "generate", run)
    return images_answer(request, st, job, body.response_format)


async def read_upload(upload: UploadFile, field: str, max_bytes: int) -> Image.Image:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidArgument(f"{field} is over the server's upload cap of {max_bytes} bytes")
    return open_image(data, field)


def edit_mask(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    """White where OpenAI's convention says to edit: the transparent pixels of the mask, or of
    the image itself when no mask is sent."""
    source = mask if mask is not None else image
    if "A" not in source.getbands():
        what = "mask" if mask is not None else "image (sent without a mask)"
        raise InvalidArgument(
            f"the {what} has no transparency: mark the area to edit with fully transparent pixels"
        )
    alpha = source.getchannel("A").resize(image.size, Image.Resampling.NEAREST)
    edit = alpha.point(lambda v: 255 if v == 0 else 0)
    if edit.getbbox() is None:
        raise InvalidArgument("the mask has no fully transparent pixels: nothing to edit")
    return edit


@router.post("/images/edits")
async def edits(
    request: Request,
    st: StudioDep,
    image: UploadFile = File(...),
    prompt: str = Form(..., min_length=1, max_length=4000),
    mask: UploadFile | None = File(None),
    model: str | None = Form(None),
    n: int = Form(1, ge=1, le=16),
    size: str | None = Form(None),
    response_format: Format = Form("b64_json"),
) -> dict[str, Any]:
    """Inpainting: the transparent part of the mask is regenerated following `prompt`."""
    from latentkit.ops import inpaint

    st = await st.for_model(model)
    picture = await read_upload(image, "image", st.max_upload_bytes)
    painted = await read_upload(mask, "mask", st.max_upload_bytes) if mask else None
    where = edit_mask(picture, painted)
    picture = picture.convert("RGB")
    width, height = parse_size(size)
    if width is not None and height is not None:
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
        where = where.resize((width, height), Image.Resampling.NEAREST)
    st.check_recipe_args(
        prompt, SamplingOptions(seed=0, n=n).args(), width=picture.width, height=picture.height
    )

    def run(job: Job) -> dict[str, Any]:
        callback = job.progress_callback(st.preview_every)
        result = inpaint(st.pipe, picture, where, prompt, n=n, callback=callback,
                         keep_size=width is not None)  # fmt: skip
        return st.save_generation(result)

    job = await run_and_wait(st, "inpaint", run)
    return images_answer(request, st, job, response_format)


@router.get("/models")
async def models(st: StudioDep) -> dict[str, Any]:
    created = int(time.time())
    entries = [{"id": name, "object": "model", "created": created, "owned_by": "latentkit"}
               for name in st.models.names()]  # fmt: skip
    return {"object": "list", "data": entries}
