"""Jobs: their status, live preview and progress events, and cancelling them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from latentkit.server.errors import ApiError
from latentkit.server.jobs import FINISHED, Job
from latentkit.server.state import Studio, StudioDep
from latentkit.server.storage import check_id

router = APIRouter(tags=["jobs"])


def find_job(st: Studio, job_id: str) -> Job:
    job = st.queue.get(check_id(job_id, "job_id"))
    if job is None:
        raise ApiError(
            404,
            f"job_id {job_id!r} names no job (finished jobs are kept for a while, then forgotten)",
            "job_id",
        )
    return job


@router.get("/api/jobs")
async def jobs(st: StudioDep, active: bool = False) -> list[dict[str, Any]]:
    """Jobs the server remembers, oldest first; `active=true`: only queued and running ones,
    which a reloaded page reattaches to."""
    return [j.public() for j in (st.queue.active() if active else st.queue.list())]


@router.get("/api/jobs/{job_id}")
async def job_status(job_id: str, st: StudioDep) -> dict[str, Any]:
    """Status, step/total, result (image ids) or error; the latent preview is its own URL."""
    return find_job(st, job_id).public()


@router.get("/api/jobs/{job_id}/preview")
async def job_preview(job_id: str, st: StudioDep) -> Response:
    job = find_job(st, job_id)
    if job.preview_png is None:
        raise ApiError(404, f"job {job_id} has no preview yet", "job_id")
    return Response(job.preview_png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/api/jobs/{job_id}/cancel")
async def cancel(job_id: str, st: StudioDep) -> dict[str, Any]:
    """Queued jobs never start; a running one stops at its next sampler step."""
    return st.queue.cancel(find_job(st, job_id)).public()


@router.get("/api/jobs/{job_id}/events")
async def events(job_id: str, request: Request, st: StudioDep) -> StreamingResponse:
    """Server-sent events: one `progress` event per change, then `end` when finished."""
    job = find_job(st, job_id)

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
