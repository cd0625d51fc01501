"""The models a server offers: the one it started with, and with `--models DIR` every model in
that folder, each loaded on first use and kept in a cache bounded by memory. A latentkit model
that carries a distilled student is offered twice: as itself and as its `--fast` variant.

Loading an SDXL-sized model takes a minute, so models stay loaded between requests; when a new
one would take the cache over its budget, the least recently used ones are dropped first (never
the one being asked for).
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from latentkit.errors import InvalidArgument


class ModelShelf:
    """Name -> Pipeline, loaded on first use through `load(path, fast)`, within `budget` bytes;
    the names in `fast` load their folder's few-step student."""

    def __init__(
        self,
        default: Any,
        offered: dict[str, Path],
        load: Callable[[Path, bool], Any],
        budget: int,
        size_of: Callable[[Path], int],
        fast: Iterable[str] = (),
    ) -> None:
        self.default = default
        self.offered = dict(offered)
        self.fast = frozenset(fast)
        self.load, self.budget, self.size_of = load, budget, size_of
        self.loaded: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.lock = threading.Lock()
        self.current: str | None = None  # what requests naming no model get (None: default)

    def names(self) -> list[str]:
        """The default model first, then the folder's."""
        return [self.default.model_id, *(n for n in self.offered if n != self.default.model_id)]

    def get(self, name: str | None) -> Any:
        """The pipeline a request names (None: the current model, the default unless switched)."""
        name = name if name is not None else self.current
        if name is None or name == self.default.model_id:
            return self.default
        if name not in self.offered:
            raise InvalidArgument(
                f"unknown model {name!r}; this server offers: {', '.join(self.names())}"
            )
        with self.lock:
            if name in self.loaded:
                self.loaded.move_to_end(name)
                return self.loaded[name][0]
            size = self.size_of(self.offered[name])
            self.make_room(size)
            pipe = self.load(self.offered[name], name in self.fast)
            self.loaded[name] = (pipe, size)
            return pipe

    def fast_name_of(self, path: Path | None) -> str | None:
        """The name under which the `--fast` variant of the model at `path` is offered."""
        return next((n for n in sorted(self.fast) if self.offered[n] == path), None)

    def make_room(self, size: int) -> None:
        while self.loaded and sum(s for _, s in self.loaded.values()) + size > self.budget:
            self.loaded.popitem(last=False)
            gc.collect()

    def resident(self) -> list[str]:
        return [self.default.model_id, *self.loaded]
