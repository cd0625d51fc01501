"""What the other tools' APIs (AUTOMATIC1111's, OpenAI's) share: images as base64 in JSON, and
one blocking call that runs a job on the studio's queue and waits for it.

Those APIs answer a request with its images, so they wait; the work still goes through the same
queue as the studio's jobs, so it is ordered with them, shows in /api/jobs, and can be cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from PIL import Image

from latentkit.errors import InvalidArgument
from latentkit.server.jobs import CANCELLED, FAILED, Job, QueueFull


def decode_image(data: str, field: str, max_bytes: int) -> Image.Image:
    """A base64 PNG, JPEG or WebP, bare or as a `data:` URL, opened and checked."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    if len(data) * 3 // 4 > max_bytes:
        raise InvalidArgument(f"{field} is over the server's upload cap of {max_bytes} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{field} is not base64-encoded image data") from None
    return open_image(raw, field)


def open_image(raw: bytes, field: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise InvalidArgument(f"{field} is not a readable image ({e})") from None
    return image


def png_base64(image_bytes: bytes) -> str:
    return base64.b64encode(image_bytes).decode("ascii")


async def run_and_wait(st: Any, kind: str, run: Callable[[Job], dict[str, Any]]) -> Job:
    """Queue `run` as a job and wait for it; a failure answers with the status it would have
    had up front. A cancelled job is returned as it is (these APIs answer an interrupt with
    what was made, i.e. nothing)."""
    try:
        job = st.queue.submit(kind, run)
    except QueueFull as e:
        raise HTTPException(429, str(e)) from None
    await asyncio.wrap_future(job.future)
    if job.status == FAILED:
        error = job.error or {}
        raise HTTPException(int(error.get("status", 400)), str(error.get("error", "failed")))
    return job


def stored_images(st: Any, job: Job) -> list[tuple[bytes, dict[str, Any], str]]:
    """PNG bytes, recipe and id of each image a finished job stored (none if cancelled)."""
    if job.status == CANCELLED or not job.result:
        return []
    return [
        (st.storage.path(item["id"]).read_bytes(), item["recipe"], item["id"])
        for item in job.result["images"]
    ]
