"""The app `latentkit serve` runs: the shared Studio, the routers, the static page and the guard.

Routers are grouped by topic (pages and files, jobs, images, latents, directions, video) and
reach the Studio through a dependency; this module is the only one that knows them all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from latentkit.families.catalog import fast_variants, model_bytes, models_in
from latentkit.families.memory import available_memory
from latentkit.pipeline import Pipeline
from latentkit.server import (
    a1111,
    openai_api,
    routes_directions,
    routes_files,
    routes_images,
    routes_jobs,
    routes_latents,
    routes_video,
)
from latentkit.server.errors import add_error_handlers, error_body, to_api_error
from latentkit.server.guard import Guard
from latentkit.server.jobs import JobQueue
from latentkit.server.models import ModelShelf
from latentkit.server.routes_files import STATIC
from latentkit.server.state import LockedEncoder, Studio
from latentkit.server.storage import Storage

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file in a multipart body
ROUTERS = [
    routes_files.router,
    routes_jobs.router,
    routes_images.router,
    routes_latents.router,
    routes_directions.router,
    routes_video.router,
    a1111.router,
    openai_api.router,
]


def create_app(
    model: str | Path | None = None,
    outputs: str | Path = "latentkit-outputs",
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_concurrent: int = 1,
    device: str | None = None,
    pipe: Pipeline | None = None,
    preview_every: int = 2,
    video_model: str | Path | None = None,
    video_pipe: Any = None,
    prediction: str | None = None,
    offload: bool = False,
    vae: str | Path | None = None,
    base: str | Path | None = None,
    max_work: int | None = None,
    allowed_hosts: Iterable[str] | None = None,
    models: str | Path | None = None,
    models_memory: int | None = None,
) -> FastAPI:
    """The app `latentkit serve` runs; tests pass a loaded `pipe` to share one tiny model.

    `max_work` caps one request's pixels x steps x images (default: 16 images at twice the
    model's side at 50 steps). `allowed_hosts` are Host names accepted besides the address the
    server listens on and loopback names (which, without a token, are all it accepts: see
    guard.py).

    `models`: a folder whose every model (our folders, diffusers folders, single checkpoints) a
    request may name; each loads on first use into a cache of `models_memory` bytes (default:
    60% of the memory available at start), the least recently used leaving first.

    The video model (`video_model`, else $LATENTKIT_VIDEO_MODEL, else the shipped one) loads on
    first use; if it is missing the server still runs and /api/video answers 501."""
    if pipe is None:
        pipe = Pipeline.load(model, device=device, prediction=prediction, offload=offload, vae=vae,
                             base=base)  # fmt: skip
    if max_concurrent > 1 and not isinstance(pipe.text_encoder, LockedEncoder):
        pipe.text_encoder = LockedEncoder(pipe.text_encoder)
    storage = Storage(outputs)
    queue = JobQueue(max_concurrent, on_error=lambda e: error_body(to_api_error(e, storage.root)))
    shelf = model_shelf(pipe, models, models_memory, max_concurrent, device=device,
                        offload=offload, base=base)  # fmt: skip
    studio = Studio(pipe, storage, queue, preview_every, max_upload_bytes, video_model,
                    video_pipe, max_work, shelf)  # fmt: skip

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()

    app = FastAPI(
        lifespan=lifespan,
        title="latentkit studio",
        version="1",
        description="Every studio feature as JSON in, images out. Images enter through "
        "POST /api/uploads (multipart, one `file`) and are referred to by id everywhere else.",
    )
    app.state.studio = studio
    add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, token=token, max_body=max_upload_bytes + MULTIPART_SLACK,
                       allowed_hosts=allowed_hosts)  # fmt: skip
    return app


def model_shelf(
    pipe: Pipeline,
    folder: str | Path | None,
    memory: int | None,
    workers: int,
    **load_options: Any,
) -> ModelShelf:
    """The models requests may name: the served one, every model in `folder`, and the `--fast`
    variant of each latentkit model among them that carries a distilled student."""
    offered = models_in(folder) if folder is not None else {}
    served = {pipe.model_id: pipe.components.source} if pipe.components.source else {}
    fast = fast_variants({**served, **offered})
    budget = memory if memory is not None else int(0.6 * available_memory()) or 8 * 1024**3

    def load(path: Path, fast: bool) -> Pipeline:
        loaded = Pipeline.load(path, fast=fast, **load_options)
        if workers > 1:
            loaded.text_encoder = LockedEncoder(loaded.text_encoder)
        return loaded

    # fp16 files run as fp32 on a CPU: count twice their size on disk
    return ModelShelf(pipe, {**offered, **fast}, load, budget, lambda path: 2 * model_bytes(path),
                      fast=fast)  # fmt: skip
