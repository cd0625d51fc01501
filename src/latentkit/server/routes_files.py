"""The page, what the model is, and files: uploads in, outputs out by id, the gallery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import FileResponse, Response

from latentkit.errors import LatentkitError
from latentkit.server.errors import ApiError
from latentkit.server.guard import TOKEN_COOKIE
from latentkit.server.routes_video import video_info
from latentkit.server.state import StudioDep
from latentkit.server.storage import MEDIA_TYPES, is_upload

STATIC = Path(__file__).parent / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index(request: Request) -> FileResponse:
    page = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
    token = request.query_params.get("token")
    if token:  # the guard has checked it; the page's own requests then carry it as a cookie
        page.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return page


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)


@router.get("/api/model", tags=["model"])
async def model_info(st: StudioDep) -> dict[str, Any]:
    """The served model: sizes the page offers, samplers, defaults, how it was trained."""
    from dataclasses import asdict

    from latentkit.diffusion.samplers import SAMPLERS

    pipe = st.pipe
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
        "fast": fast_info(pipe, st.models.fast_name_of(parts.source)),
    }


def fast_info(pipe: Any, fast_id: str | None) -> dict[str, Any] | None:
    """The served model's `--fast` variant (its distilled student) as the server offers it
    (`fast_id`, what requests name as their `model`), with the steps and cfg it was distilled
    for; None when it has none."""
    from latentkit.families.bundle import student_sampling

    bundle = pipe.components.bundle
    if fast_id is None or bundle is None or bundle.student is None:
        return None
    sampling = student_sampling(bundle)
    return {"model": fast_id, "steps": sampling.get("steps"), "cfg": sampling.get("cfg")}


@router.post("/api/uploads", status_code=201, tags=["files"])
async def upload(
    st: StudioDep, file: UploadFile = File(...), kind: Literal["upload", "mask"] = "upload"
) -> dict[str, Any]:
    """Store a PNG, JPEG or WebP as sent (a PNG keeps its recipe); answers its id.
    `kind=mask` keeps painted masks out of the gallery."""
    data = await file.read(st.max_upload_bytes + 1)
    if len(data) > st.max_upload_bytes:
        raise ApiError(413, too_large_message(len(data), st.max_upload_bytes), "file")
    file_id, (width, height) = st.storage.save_upload(data, "file", kind)
    return {"id": file_id, "width": width, "height": height}


@router.get("/api/files/{file_id}/recipe", tags=["files"])
async def get_recipe(file_id: str, st: StudioDep) -> dict[str, Any]:
    """The recipe a PNG carries in its metadata (what made it, to reuse or replay)."""
    from latentkit.outputs import read_png_recipe

    path = st.storage.image_path(file_id, "file_id")
    try:
        return read_png_recipe(path)
    except LatentkitError:
        raise ApiError(400, f"file_id {file_id!r} carries no latentkit recipe", "file_id") from None


@router.get("/api/files/{file_id:path}", tags=["files"])
async def get_file(file_id: str, st: StudioDep) -> FileResponse:
    """Any stored output by id: PNG, GIF, MP4 or safetensors."""
    path = st.storage.path(file_id, "file_id")
    media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


@router.get("/api/gallery", tags=["files"])
async def gallery(st: StudioDep, limit: int = 100) -> list[dict[str, Any]]:
    """Stored images, newest first, with their recipes; `kind` says which were uploaded."""
    from latentkit.outputs import read_png_recipe

    out = []
    for path in st.storage.images(max(1, min(limit, 1000))):
        try:
            recipe = read_png_recipe(path)
        except LatentkitError:
            recipe = None
        kind = "upload" if is_upload(path.name) else "generated"
        out.append({"id": path.name, "recipe": recipe, "kind": kind})
    return out


def too_large_message(size: int, cap: int) -> str:
    return f"file is {size}+ bytes, over the server's upload cap of {cap} bytes"
