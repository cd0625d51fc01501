"""Video: text (and optionally a first frame) to a GIF clip, as `latentkit video` makes it."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from latentkit.server import schemas as s
from latentkit.server.errors import ApiError
from latentkit.server.jobs import Job
from latentkit.server.state import StudioDep

router = APIRouter(tags=["video"])


@router.post("/api/video", status_code=202)
async def video(body: s.VideoRequest, st: StudioDep, wait: bool = False) -> JSONResponse:
    """Text (and optionally a first frame, `image`) to a GIF clip, as `latentkit video`
    makes it: the recipe rides in the GIF's comment and in a `.gif.json` sidecar."""
    from latentkit.data.images import load_image
    from latentkit.ops import image_to_video
    from latentkit.outputs import save_clip

    vpipe = await asyncio.to_thread(st.require_video)
    if body.model is not None and body.model != vpipe.model_id:
        raise ApiError(400, f"unknown model {body.model!r}; this server's video model is "
                       f"{vpipe.model_id!r}", "model")  # fmt: skip
    first, notices = None, []
    if body.image is not None:  # another size is scaled and centre-cropped, as in the CLI
        path, size = st.image(body.image)
        first = load_image(path)
        height, width = vpipe.native_size
        if size != (width, height):
            notices.append(f"image is {size[0]}x{size[1]}: scaled and centre-cropped to "
                           f"{width}x{height}, the clip's frame size")  # fmt: skip
    args = {"negative_prompt": body.negative_prompt, "steps": body.steps, "cfg": body.cfg,
            "sampler": body.sampler, "fps": body.fps}  # fmt: skip
    with warnings.catch_warnings():  # the rounded frame count is in the answer
        warnings.simplefilter("ignore")
        recipe = vpipe.recipe(body.prompt, seed=body.seed, frames=body.frames, **args)
    st.check_work(recipe.width, recipe.height, recipe.steps, recipe.frames, "frames")

    def run(job: Job) -> dict[str, Any]:
        progress = job.progress_callback(st.preview_every)
        if first is None:
            result = vpipe.run(recipe, progress)
        else:  # frames already rounded: no warning from a worker
            result = image_to_video(vpipe, first, body.prompt, source=body.image,
                                    callback=progress, **{**args, "seed": recipe.seed,
                                                          "frames": recipe.frames})  # fmt: skip
        meta = {**result.recipe_of(0), "op": "video"}
        clip_id, clip_path = st.storage.new_path("video", ".gif")
        save_clip(result.clips[0], clip_path, meta, result.recipe.fps)
        return {"video": clip_id, "sidecar": f"{clip_id}.json", "frames": len(result.clips[0]),
                "recipe": meta}  # fmt: skip

    return await st.submit("video", run, wait, notices)


def video_info(vpipe: Any) -> dict[str, Any] | None:
    """What the page's Video tab offers: the clip size and the video model's defaults."""
    if vpipe is None:
        return None
    from dataclasses import asdict

    defaults = {**asdict(vpipe.defaults), "frames": vpipe.codec.native_frames}
    return {"model": vpipe.model_id, "size": vpipe.image_size, "defaults": defaults}
