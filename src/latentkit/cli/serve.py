"""`latentkit serve`: the web studio and its REST API. Its own module, so only this command pays
for importing the web stack (FastAPI, uvicorn)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from latentkit.cli.options import BaseOpt, DeviceOpt, ModelOpt, OffloadOpt, PredictionOpt, VaeOpt
from latentkit.errors import InvalidArgument, check_finite, check_positive_int
from latentkit.families.bundle import read_manifest
from latentkit.server import create_app

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 needs --token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    model: ModelOpt = None,
    prediction: PredictionOpt = None,
    offload: OffloadOpt = False,
    vae: VaeOpt = None,
    base: BaseOpt = None,
    video_model: Annotated[
        Path | None,
        typer.Option(
            help="Video model folder (default: $LATENTKIT_VIDEO_MODEL, else the shipped one)."
        ),
    ] = None,
    outputs: Annotated[Path, typer.Option(help="Folder for images and files it makes.")] = Path(
        "latentkit-outputs"
    ),
    token: Annotated[
        str | None, typer.Option(help="Bearer token every request must carry (or ?token=).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Upload cap in MB.")] = 10.0,
    workers: Annotated[int, typer.Option(help="Jobs run at once (one per device is best).")] = 1,
    device: DeviceOpt = None,
    models: Annotated[
        Path | None,
        typer.Option(
            help="Folder of models a request may name (our folders, diffusers folders, "
            "single .safetensors checkpoints); each loads on first use."
        ),
    ] = None,
    models_memory_gb: Annotated[
        float | None,
        typer.Option(
            help="Memory for loaded --models, least recently used leaving first "
            "(default: 60% of what is available)."
        ),
    ] = None,
) -> None:
    """Serve the web studio and its REST API (OpenAPI schema at /openapi.json)."""
    check_positive_int("port", port)
    check_positive_int("workers", workers)
    check_finite("max_upload_mb", max_upload_mb, low=0.001)
    check_exposure(host, port, token)
    if models_memory_gb is not None:
        check_finite("models_memory_gb", models_memory_gb, low=0.001)
    if video_model is not None and read_manifest(video_model).get("kind") != "video":
        raise InvalidArgument(f"--video-model {video_model} is not a video model folder")
    web = create_app(
        model=model,
        prediction=prediction,
        offload=offload,
        vae=vae,
        base=base,
        video_model=video_model,
        outputs=outputs,
        token=token,
        device=device,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_concurrent=workers,
        models=models,
        models_memory=None if models_memory_gb is None else int(models_memory_gb * 1e9),
    )
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    typer.echo(f"latentkit studio on http://{shown}:{port}/  (outputs in {outputs})")
    # keep-alive outlasts a client's idle pool (httpx: 5 s), so reused connections are not cut
    uvicorn.run(web, host=host, port=port, log_level="warning", timeout_keep_alive=30)


def check_exposure(host: str, port: int, token: str | None) -> None:
    """Beyond this machine a token is required, and the warning says what it protects."""
    if host in LOCAL_HOSTS:
        return
    if not token:
        raise InvalidArgument(
            f"--host {host} exposes the server beyond this machine: give --token SECRET too"
        )
    warnings.warn(
        f"serving on {host}: anyone who can reach port {port} and knows the token can use "
        "this machine's compute and read its outputs",
        stacklevel=1,
    )
