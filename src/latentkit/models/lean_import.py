"""Import one diffusers model class without importing every other model diffusers ships.

`diffusers.models.autoencoders` and `diffusers.models.transformers` import all of their ~100
model files in their `__init__`, which is most of the time `latentkit generate` spends starting
up. We register those two packages without running their `__init__` until something asks them
for a name they do not have yet; then the real `__init__` runs in place, so
`from diffusers.models.autoencoders import AnyModel` (or `from diffusers import AnyModel`)
still works afterwards, exactly as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

HEAVY_PACKAGES = ("diffusers.models.autoencoders", "diffusers.models.transformers")


class _DeferredPackage(types.ModuleType):
    """A package whose `__init__` runs on the first attribute it lacks."""

    def __getattr__(self, name: str):
        if name.startswith("__") or self.__dict__.get("_latentkit_loaded"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.__dict__["_latentkit_loaded"] = True
        self.__spec__.loader.exec_module(self)  # type: ignore[union-attr]
        return getattr(self, name)


def _defer(package: str) -> None:
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # another layout of diffusers: let the normal import handle it
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _DeferredPackage
    sys.modules[package] = module
    parent, _, child = package.rpartition(".")
    # Like the import system, bind the package on its parent (without triggering its lazy load).
    parent_module = sys.modules.get(parent)
    if parent_module is not None:
        parent_module.__dict__.setdefault(child, module)


def diffusers_class(module: str, name: str) -> type:
    """`diffusers_class("models.autoencoders.autoencoder_kl", "AutoencoderKL")`."""
    for package in HEAVY_PACKAGES:
        _defer(package)
    return getattr(importlib.import_module(f"diffusers.{module}"), name)
