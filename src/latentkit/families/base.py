"""What every family loader returns: the three components plus what the pipeline needs to
drive them (schedule, defaults, identity, a description for `latentkit info`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from latentkit.diffusion.schedules import Schedule
from latentkit.models.components import Codec, Network, TextEncoder


@dataclass(frozen=True)
class Defaults:
    """Sampling defaults of a model; sizes come from its codec's native size."""

    steps: int = 25
    cfg: float = 4.0
    sampler: str = "euler"
    shift: float = 1.0
    fps: int = 8  # video only
    guidance: float | None = None  # guidance-distilled families only (FLUX.1-dev: 3.5)


class Adapters(Protocol):
    """A model's LoRA host: each family loads adapters its own way (peft, diffusers)."""

    def load(self, path: Path, name: str) -> None: ...

    def set_weights(self, weights: dict[str, float]) -> None:
        """Activate exactly these adapters at these weights (0 switches one off exactly)."""
        ...

    def merge(self) -> None: ...

    def unmerge(self) -> None: ...


@dataclass
class Components:
    """A loaded model, family-neutral. `bundle` is set for latentkit's own models only (what
    training, saving and merging LoRAs into a new bundle work on)."""

    family: str  # registry key: "latentkit", "sd1", "sd2", "sdxl" ...
    title: str  # "latentkit image model", "Stable Diffusion 1.x" ...
    codec: Codec
    text: TextEncoder
    network: Network | None
    schedule: Schedule
    defaults: Defaults
    name: str
    model_id: str
    source: Path | None = None
    description: list[tuple[str, str]] = field(default_factory=list)
    adapters: Adapters | None = None
    bundle: Any = None

    @property
    def is_video(self) -> bool:
        return self.codec.time_factor > 1

    def summary(self) -> str:
        """One line: the family and how it predicts (printed when another family loads)."""
        rows = dict(self.description)
        parts = [self.title, rows.get("layout", ""), rows.get("prediction", "")]
        return ", ".join(p for p in parts if p)
