"""What the endpoints share: the pipeline (loaded once), the outputs folder and the job queue,
with the checks every request runs before it is queued.

Routers reach it through `StudioDep`, which reads `request.app.state.studio`, so no router
imports the app and the app imports every router.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from PIL import Image

from latentkit.errors import InvalidArgument, LatentkitError, ModelFileError
from latentkit.pipeline import Generation, Pipeline, Recipe
from latentkit.server import schemas as s
from latentkit.server.errors import ApiError
from latentkit.server.jobs import DONE, FAILED, Job, JobQueue, QueueFull
from latentkit.server.models import ModelShelf
from latentkit.server.storage import Storage


@dataclass
class Source:
    """An input image: where it is, its size, the size the op works at, what that changed."""

    path: Path
    size: tuple[int, int]
    working: tuple[int, int]
    notices: list[str]


def default_max_work(pipe: Pipeline) -> int:
    """Pixel-steps one request may cost: 16 images at twice the model's side at 50 steps (16
    images of 128x128 at 50 steps for the shipped 64 px model)."""
    return 16 * (2 * pipe.image_size) ** 2 * 50


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
        max_work: int | None = None,
        models: ModelShelf | None = None,
    ) -> None:
        self.pipe, self.storage, self.queue = pipe, storage, queue
        self.models = models or ModelShelf(
            pipe, {}, lambda path, fast: Pipeline.load(path, fast=fast), 0, lambda _: 0
        )
        self.work_limit = max_work
        self.max_work = max_work if max_work is not None else default_max_work(pipe)
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

    async def for_model(self, name: str | None) -> Studio:
        """This studio with the pipeline a request names (None: the current one), loaded on
        first use off the event loop; the queue, outputs and limits are shared."""
        try:
            pipe = await asyncio.to_thread(self.models.get, name)
        except InvalidArgument as e:
            raise ApiError(400, str(e), "model") from None
        if pipe is self.pipe:
            return self
        view = copy.copy(self)
        view.pipe = pipe
        view.max_work = self.work_limit if self.work_limit is not None else default_max_work(pipe)
        return view

    @property
    def max_side(self) -> int:
        """Largest image side an operation accepts: the pipeline's own limit (16x the model's
        size: 1024 px for the shipped 64 px model), the same rule as the CLI's."""
        return self.pipe.max_side

    def check_side(self, field: str, value: int | None) -> None:
        if value is not None and value > self.max_side:
            raise ApiError(400, f"{field} {value} is over this server's limit of {self.max_side} "
                           "pixels (16x the model's size)", field)  # fmt: skip

    def check_recipe(self, body: s.RecipeFields, **size: int | None) -> Recipe:
        """The recipe the request makes (steps, cfg, seed + n, sampler, sizes), validated; ops
        that size it from their input image build their own, and this one checks the rest."""
        return self.check_recipe_args(body.prompt, body.recipe_args(), **size)

    def check_recipe_args(self, prompt: str, args: dict[str, Any], **size: int | None) -> Recipe:
        """The same from a prompt and `Pipeline.recipe`'s arguments (the other tools' APIs),
        refused before queueing if a side is over the limit or not one the model takes, or
        the work is over the budget."""
        for name, value in size.items():
            self.check_side(name, value)
        recipe = self.pipe.recipe(prompt, **args, **size)
        self.pipe.latent_shape(recipe.height, recipe.width)
        self.check_work(recipe.width, recipe.height, recipe.steps, recipe.n)
        return recipe

    def check_work(
        self, width: int, height: int, steps: int, n: int = 1, what: str = "images"
    ) -> None:
        """Refuse, before queueing, a request whose pixels x steps x n is over the budget: one
        request should not hold the only worker for an hour."""
        work = width * height * steps * n
        if work > self.max_work:
            raise ApiError(400, f"this request is {width}x{height} pixels x {steps} steps x {n} "
                           f"{what} = {work:,} pixel-steps, over this server's budget of "
                           f"{self.max_work:,} per request: ask for fewer steps, {what} or "
                           "pixels")  # fmt: skip

    def image(
        self, file_id: str, field: str = "image", as_is: bool = True
    ) -> tuple[Path, tuple[int, int]]:
        """The stored image an id names and its size, if the model can take it: readable, no
        side below one codec cell, and, if it is to be worked on `as_is`, none over
        `max_side` (an image that will be shrunk to the model's size may be any size)."""
        from latentkit.ops.source import min_side

        path = self.storage.image_path(file_id, field)
        try:
            with Image.open(path) as img:
                size = img.size
        except OSError:
            raise ApiError(400, f"{field} {file_id!r} is not a readable image", field) from None
        if as_is and max(size) > self.max_side:
            raise ApiError(400, f"{field} is {size[0]}x{size[1]}, over this server's limit of "
                           f"{self.max_side} pixels a side", field)  # fmt: skip
        if min(size) < min_side(self.pipe):
            raise ApiError(400, f"{field} is {size[0]}x{size[1]}, under the model's minimum of "
                           f"{min_side(self.pipe)} pixels a side", field)  # fmt: skip
        return path, size

    def source(self, file_id: str, keep_size: bool, field: str = "image") -> Source:
        """An input image with the size the op will work at: shrunk to the model's size
        (aspect kept, sides rounded to the latent cell) unless `keep_size`, said in a notice."""
        from latentkit.ops.source import working_size

        path, size = self.image(file_id, field, as_is=keep_size)
        working = working_size(self.pipe, size, keep_size)
        return Source(path, size, working, self.resize_notices(field, size, working, keep_size))

    def resize_notices(
        self, field: str, size: tuple[int, int], working: tuple[int, int], keep_size: bool
    ) -> list[str]:
        """What changed about an input image's size, and how to avoid it, for the answer."""
        if working == size:
            return []
        height, width = self.pipe.native_size
        said = f"{field} is {size[0]}x{size[1]}"
        now = f"working at {working[0]}x{working[1]}"
        if not keep_size and (size[0] > width or size[1] > height):
            native = f"larger than the model's native {width}x{height}"
            slower = "send keep_size: true to work at full size, which is slower"
            return [f"{said}, {native}: {now} (aspect kept); {slower}"]
        cell = f"the nearest multiple of the model's {self.pipe.latent_cell}-pixel latent cell"
        return [f"{said}: {now}, {cell}"]

    def prompt_of(self, path: Path) -> str:
        from latentkit.outputs import read_png_recipe

        try:
            return str(read_png_recipe(path).get("prompt", ""))
        except LatentkitError:
            return ""

    # -- running -------------------------------------------------------------------------------

    async def submit(
        self,
        kind: str,
        run: Callable[[Job], dict[str, Any]],
        wait: bool,
        notices: list[str] | None = None,
    ) -> JSONResponse:
        """Queue the job: 202 with it at once, or with `wait` its end (the error's own status
        if it failed, 409 if cancelled)."""
        try:
            job = self.queue.submit(kind, run, notices)
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
