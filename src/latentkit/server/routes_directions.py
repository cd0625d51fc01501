"""Directions in the model's spaces: find one from two prompt sets, list them, and move an image
along one (one image per amount, a slider's stops)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from PIL import Image

from latentkit.server import schemas as s
from latentkit.server.jobs import Job
from latentkit.server.state import StudioDep

router = APIRouter(tags=["directions"])


@router.get("/api/directions")
async def directions(st: StudioDep) -> list[dict[str, Any]]:
    from latentkit.ops.directions import Direction

    out = []
    for name in st.storage.direction_names():
        d = Direction.load(st.storage.direction_path(name))
        out.append({"name": name, "kind": d.kind, "meta": d.meta})
    return out


@router.post("/api/directions", status_code=202)
async def find_direction(
    body: s.DirectionRequest, st: StudioDep, wait: bool = False
) -> JSONResponse:
    """A text direction from two prompt sets, saved under `name` for /api/edit."""
    from latentkit.ops.directions import from_prompts

    st = await st.for_model(body.model)

    def run(job: Job) -> dict[str, Any]:
        direction = from_prompts(st.pipe, body.positive, body.negative, body.name)
        direction.save(st.storage.directions / f"{body.name}.safetensors")
        return {"name": body.name, "kind": direction.kind}

    return await st.submit("direction", run, wait)


@router.post("/api/edit", status_code=202)
async def edit(body: s.EditRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    """Move an image along a saved direction, one image per amount (a slider's stops)."""
    from latentkit.ops.directions import Direction, check_direction, edit_image, edit_recipe

    st = await st.for_model(body.model)
    src = st.source(body.image, False)
    path = src.path
    direction = Direction.load(st.storage.direction_path(body.direction))
    check_direction(st.pipe, direction)
    prompt = body.prompt if body.prompt is not None else st.prompt_of(path)
    steps = st.pipe.recipe(prompt, steps=body.steps).steps
    st.check_work(*src.working, steps, len(body.amounts), "amounts")

    def run(job: Job) -> dict[str, Any]:
        rows = edit_image(st.pipe, path, direction, body.amounts, prompt, body.steps)
        images = []
        for amount, row in zip(body.amounts, rows, strict=True):
            recipe = edit_recipe(st.pipe, body.image, body.direction, [amount], prompt)
            image_id = st.storage.save_image(Image.fromarray(row), recipe, "edit")
            images.append({"id": image_id, "amount": amount, "recipe": recipe})
        return {"images": images}

    return await st.submit("edit", run, wait, src.notices)
