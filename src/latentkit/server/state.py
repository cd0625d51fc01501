"""What the endpoints share: the pipeline (loaded once), the outputs folder and the job queue,
with the checks every request runs before it is queued.

Routers reach it through `StudioDep`, which reads `request.app.state.studio`, so no router
imports the app and the app imports every router.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from PIL import Image

from latentkit.errors import LatentkitError, ModelFileError
from latentkit.pipeline import Generation, Pipeline, Recipe
from latentkit.server import schemas as s
from latentkit.server.errors import ApiError
from latentkit.server.jobs import DONE, FAILED, Job, JobQueue, QueueFull
from latentkit.server.storage import Storage


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


def studio_of(request: Request) -> Studio:
    """The app's Studio, for routers: `studio: StudioDep` in an endpoint's signature."""
    return request.app.state.studio


StudioDep = Annotated[Studio, Depends(studio_of)]
