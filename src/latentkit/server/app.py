"""The app factory and what the endpoints share: the pipeline, the outputs, the queue, errors.

Every error a request can cause becomes a 4xx JSON `{"error", "field", "status"}`: pydantic's
422s, latentkit's own errors (400, or 404 for ids that name nothing), and errors raised inside
a job, which `?wait=true` answers with the same status they would have had up front.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentkit.errors import LatentkitError, ModelFileError
from latentkit.pipeline import Generation, Pipeline, Recipe
from latentkit.server import schemas as s
from latentkit.server.guard import BodyTooLarge, Guard
from latentkit.server.jobs import DONE, FAILED, Job, JobQueue, QueueFull
from latentkit.server.storage import NotFound, Storage

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file in a multipart body
FIELDS = sorted(
    {
        name
        for model in vars(s).values()
        if isinstance(model, type) and issubclass(model, s.Body)
        for name in model.model_fields
    }
    | {"image", "mask", "prompt", "width", "height", "amount", "file", "file_id", "job_id"}
)


class ApiError(Exception):
    """A 4xx answer: status, the field at fault (None if the request as a whole) and why."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def field_of(message: str) -> str | None:
    """The request field a latentkit error message is about: the messages start by naming it
    ("strength must be in [0, 1], got 1.7", "unknown sampler 'x'", "the mask is all black")."""
    words = [w for w in re.findall(r"[a-z_]+", message.lower())[:5] if w in FIELDS]
    # "image width 33 is not divisible...": the more specific field wins over "image"
    return next((w for w in words if w != "image"), words[0] if words else None)


def to_api_error(e: BaseException) -> ApiError:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, NotFound):
        return ApiError(404, str(e), field_of(str(e)))
    if isinstance(e, LatentkitError):
        return ApiError(400, str(e), field_of(str(e)))
    return ApiError(500, f"internal error: {type(e).__name__}: {e}")


def error_body(e: ApiError) -> dict[str, Any]:
    return {"error": e.message, "field": e.field, "status": e.status}


class LockedEncoder:
    """The text encoder behind a lock: its prompt cache is a plain dict, and with several
    workers two jobs may encode at once."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.lock = encoder, threading.Lock()

    def encode(self, prompts: list[str], negative: bool = False) -> Any:
        with self.lock:
            return self.encoder.encode(prompts, negative=negative)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)


class Studio:
    """What the endpoints share: the pipeline (loaded once), the outputs folder and the queue."""

    def __init__(
        self,
        pipe: Pipeline,
        storage: Storage,
        queue: JobQueue,
        preview_every: int,
        max_upload_bytes: int,
        video_model: str | Path | None = None,
        video_pipe: Any = None,
    ) -> None:
        self.pipe, self.storage, self.queue = pipe, storage, queue
        self.preview_every = preview_every
        self.max_upload_bytes = max_upload_bytes
        self.video_model = video_model
        self._video = video_pipe
        self._video_error: str | None = None
        self._video_lock = threading.Lock()

    # -- the video model: loaded on first use, once; a missing one only turns video off --------

    def video_pipe(self) -> Any:
        """The VideoPipeline, or None (with `video_error` saying why) if it cannot load."""
        with self._video_lock:
            if self._video is None and self._video_error is None:
                try:
                    video = Pipeline.load(self.video_model, device=self.pipe.device, kind="video")
                    if not video.is_video:
                        raise ModelFileError(f"{self.video_model} is an image model")
                except (LatentkitError, OSError) as e:
                    self._video_error = str(e)
                else:
                    if len(self.queue.threads) > 1:
                        video.text_encoder = LockedEncoder(video.text_encoder)
                    self._video = video
            return self._video

    def require_video(self) -> Any:
        video = self.video_pipe()
        if video is None:
            raise ApiError(
                501, f"video generation is not available: no video model ({self._video_error})"
            )
        return video

    # -- checks run before a job is queued -----------------------------------------------------

    def check_model(self, body: s.Body) -> None:
        if body.model is not None and body.model != self.pipe.model_id:
            raise ApiError(
                400,
                f"unknown model {body.model!r}; this server serves {self.pipe.model_id!r}",
                "model",
            )

    @property
    def max_side(self) -> int:
        """Largest image side an operation accepts: the pipeline's own limit (16x the model's
        size: 512 px for the shipped 32 px model), the same rule as the CLI's."""
        return self.pipe.max_side

    def check_side(self, field: str, value: int | None) -> None:
        if value is not None and value > self.max_side:
            raise ApiError(400, f"{field} {value} is over this server's limit of {self.max_side} "
                           "pixels (16x the model's size)", field)  # fmt: skip

    def check_recipe(self, body: s.RecipeFields, **size: int | None) -> Recipe:
        """The recipe the request makes (steps, cfg, seed + n, sampler, sizes), validated; ops
        that size it from their input image build their own, and this one checks the rest."""
        for name, value in size.items():
            self.check_side(name, value)
        recipe = self.pipe.recipe(body.prompt, **body.recipe_args(), **size)
        self.pipe.latent_shape(recipe.height, recipe.width)
        return recipe

    def image(self, file_id: str, field: str = "image") -> tuple[Path, tuple[int, int]]:
        path = self.storage.image_path(file_id, field)
        try:
            with Image.open(path) as img:
                size = img.size
        except OSError as e:
            raise ApiError(400, f"{field} {file_id!r} is not a readable image ({e})", field) from e
        if max(size) > self.max_side:
            raise ApiError(400, f"{field} is {size[0]}x{size[1]}, over this server's limit of "
                           f"{self.max_side} pixels a side", field)  # fmt: skip
        return path, size

    def prompt_of(self, path: Path) -> str:
        from latentkit.outputs import read_png_recipe

        try:
            return str(read_png_recipe(path).get("prompt", ""))
        except LatentkitError:
            return ""

    # -- running -------------------------------------------------------------------------------

    async def submit(
        self, kind: str, run: Callable[[Job], dict[str, Any]], wait: bool
    ) -> JSONResponse:
        try:
            job = self.queue.submit(kind, run)
        except QueueFull as e:
            raise ApiError(429, str(e)) from None
        if not wait:
            return JSONResponse(job.public(), status_code=202)
        await asyncio.wrap_future(job.future)
        if job.status == FAILED and job.error:
            return JSONResponse(job.public(), status_code=job.error.get("status", 400))
        return JSONResponse(job.public(), status_code=200 if job.status == DONE else 409)

    def save_generation(self, result: Generation, **recipe_extra: Any) -> dict[str, Any]:
        images = []
        for i, image in enumerate(result.images):
            recipe = {**result.recipe_of(i), **recipe_extra}
            images.append({"id": self.storage.save_image(image, recipe), "recipe": recipe})
        return {"images": images}


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
) -> FastAPI:
    """The app `latentkit serve` runs; tests pass a loaded `pipe` to share one tiny model.

    The video model (`video_model`, else $LATENTKIT_VIDEO_MODEL, else the shipped one) loads on
    first use; if it is missing the server still runs and /api/video answers 501."""
    if pipe is None:
        pipe = Pipeline.load(model, device=device, prediction=prediction, offload=offload, vae=vae,
                             base=base)  # fmt: skip
    if max_concurrent > 1 and not isinstance(pipe.text_encoder, LockedEncoder):
        pipe.text_encoder = LockedEncoder(pipe.text_encoder)
    queue = JobQueue(max_concurrent, on_error=lambda e: error_body(to_api_error(e)))
    studio = Studio(
        pipe, Storage(outputs), queue, preview_every, max_upload_bytes, video_model, video_pipe
    )

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
    from latentkit.server.routes import add_routes

    add_routes(app, studio)
    from latentkit.server import a1111, openai_api

    app.include_router(a1111.router)
    app.include_router(openai_api.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, token=token, max_body=max_upload_bytes + MULTIPART_SLACK)
    return app


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(error_body(e), status_code=e.status)

    @app.exception_handler(LatentkitError)
    async def latentkit_error(_: Request, e: LatentkitError) -> JSONResponse:
        err = to_api_error(e)
        return JSONResponse(error_body(err), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
        details = [
            {"field": ".".join(str(p) for p in x["loc"][1:]), "error": x["msg"]} for x in errors
        ]
        body = {"error": message, "field": field, "status": 422, "errors": details}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if isinstance(e.__cause__, BodyTooLarge):
            return JSONResponse({"error": "upload over the cap", "field": "file"}, 413)
        return JSONResponse(
            {"error": str(e.detail), "field": None, "status": e.status_code},
            status_code=e.status_code,
        )
