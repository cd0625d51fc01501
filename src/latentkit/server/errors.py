"""Every error a request can cause, as one JSON shape: `{"error", "field", "status"}`.

Pydantic's 422s, latentkit's own errors (400, or 404 for ids that name nothing), and errors
raised inside a job, which `?wait=true` answers with the same status they would have had up front.
Messages never carry the outputs folder's path: a client knows its files by id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentkit.errors import LatentkitError
from latentkit.server import schemas as s
from latentkit.server.guard import BodyTooLarge
from latentkit.server.storage import NotFound

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


def without_paths(message: str, root: str | Path | None) -> str:
    """The message with the outputs folder dropped from any path in it, so
    `/srv/out/upload-1.png` reads `upload-1.png`: the id the client knows, nothing about the
    server's disk."""
    if root is None:
        return message
    root = str(root).rstrip("/\\")
    for sep in ("/", "\\"):
        message = message.replace(root + sep, "")
    return message.replace(root, "the outputs folder")


def to_api_error(e: BaseException, root: str | Path | None = None) -> ApiError:
    """The answer an exception becomes, with `root` (the outputs folder) kept out of it."""
    if isinstance(e, ApiError):
        return ApiError(e.status, without_paths(e.message, root), e.field)
    message = without_paths(str(e), root)
    if isinstance(e, NotFound):
        return ApiError(404, message, field_of(message))
    if isinstance(e, LatentkitError):
        return ApiError(400, message, field_of(message))
    return ApiError(500, f"internal error: {type(e).__name__}: {message}")


def error_body(e: ApiError) -> dict[str, Any]:
    return {"error": e.message, "field": e.field, "status": e.status}


def outputs_root(request: Request) -> Path | None:
    studio = getattr(request.app.state, "studio", None)
    return studio.storage.root if studio is not None else None


def add_error_handlers(app: FastAPI) -> None:
    """Every failure answered as `error_body`; a 422 also lists each invalid field."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        err = to_api_error(e, outputs_root(request))
        return JSONResponse(error_body(err), status_code=err.status)

    @app.exception_handler(LatentkitError)
    async def latentkit_error(request: Request, e: LatentkitError) -> JSONResponse:
        err = to_api_error(e, outputs_root(request))
        return JSONResponse(error_body(err), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(e), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if isinstance(e.__cause__, BodyTooLarge):
            return JSONResponse({"error": "upload over the cap", "field": "file"}, 413)
        return JSONResponse(
            {"error": str(e.detail), "field": None, "status": e.status_code},
            status_code=e.status_code,
        )


def validation_body(e: RequestValidationError) -> dict[str, Any]:
    """Pydantic's first complaint as the message (prefixed with its field, once), all of them
    under `errors`."""
    errors = e.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    details = [{"field": ".".join(str(p) for p in x["loc"][1:]), "error": x["msg"]} for x in errors]
    return {"error": message, "field": field, "status": 422, "errors": details}
