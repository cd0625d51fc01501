"""Import one diffusers model class without importing every other model diffusers ships.

`diffusers.models.autoencoders` and `diffusers.models.transformers` import all of their ~100
model files in their `__init__`, which is most of the time `latentkit generate` spends starting
up. We register those two packages without running their `__init__` until something asks them
for a name they do not have yet; then the real `__init__` runs in place, so
`from diffusers.models.autoencoders import AnyModel` (or `from diffusers import AnyModel`)
still works afterwards, exactly as before.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator

HEAVY_PACKAGES = (
    "diffusers.models.autoencoders",
    "diffusers.models.transformers",
    "diffusers.models.unets",
)


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


# Names that diffusers modules import from peft only when `is_peft_available()` at import time.
PEFT_NAMES = {
    "diffusers.loaders.lora_base": {"BaseTunerLayer": "peft.tuners.tuners_utils"},
    "diffusers.hooks.layerwise_casting": {
        "BaseTunerLayer": "peft.tuners.tuners_utils",
        "disable_input_dtype_casting": "peft.helpers",
    },
}


class _PeftClassProxy(type):
    """Stands in for a peft class in isinstance checks, importing peft only if it is loaded.

    An object can only be an instance of a peft class once peft has been imported, so while it
    has not been, the answer is False without paying for the import.
    """

    def __instancecheck__(cls, obj: object) -> bool:
        return "peft" in sys.modules and isinstance(obj, cls._latentkit_real())

    def __subclasscheck__(cls, sub: type) -> bool:
        return "peft" in sys.modules and issubclass(sub, cls._latentkit_real())


def _lazy_peft_name(module: str, name: str):
    def real():
        return getattr(importlib.import_module(module), name)

    if name[0].isupper():
        return _PeftClassProxy(name, (), {"_latentkit_real": staticmethod(real)})

    def call(*args, **kwargs):
        return real()(*args, **kwargs)

    return call


def _restore_peft_names() -> None:
    """Give modules imported while peft was hidden the peft names they skipped, lazily."""
    for module_name, names in PEFT_NAMES.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name, source in names.items():
            if name not in module.__dict__:
                setattr(module, name, _lazy_peft_name(source, name))
        if hasattr(module, "_SHOULD_DISABLE_PEFT_INPUT_AUTOCAST"):
            module._SHOULD_DISABLE_PEFT_INPUT_AUTOCAST = True


class _LazyScipy(types.ModuleType):
    """`scipy` for a module that skipped `import scipy.stats`: submodules import on first use."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return importlib.import_module(f"scipy.{name}")


def _restore_scipy(modules: list[str]) -> None:
    """diffusers' schedulers `import scipy.stats` only if scipy was available when they loaded."""
    for module_name in modules:
        module = sys.modules.get(module_name)
        if module is not None and "is_scipy_available" in module.__dict__:
            module.__dict__.setdefault("scipy", _LazyScipy("scipy"))


@contextlib.contextmanager
def _optional_imports_deferred() -> Iterator[None]:
    """Let diffusers' modules import as if peft and scipy were absent, then give both back.

    `diffusers.hooks.layerwise_casting` and `diffusers.loaders.lora_base`, which every diffusers
    model imports, import peft (and through it transformers' auto classes) at import time when
    peft is installed: about 3 s of a cold `latentkit generate` that never uses LoRA. They use
    peft only for isinstance checks and one context manager, so those names are put back as
    lazy stand-ins (`PEFT_NAMES`). Likewise the schedulers diffusers' single-file loader pulls
    in import `scipy.stats` (about 0.5 s) for beta sigmas only; they get a lazy `scipy`.
    `is_peft_available()` and `is_scipy_available()` answer True again afterwards.
    """
    if any(name in sys.modules for name in PEFT_NAMES) or "peft" in sys.modules:
        yield
        return
    flags = importlib.import_module("diffusers.utils.import_utils")
    saved = {"_peft_available": flags._peft_available, "_scipy_available": flags._scipy_available}
    before = set(sys.modules)
    for name in saved:
        setattr(flags, name, False)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(flags, name, value)
        if saved["_peft_available"]:
            _restore_peft_names()
        if saved["_scipy_available"]:
            _restore_scipy([m for m in sys.modules if m not in before])


def diffusers_class(module: str, name: str) -> type:
    """`diffusers_class("models.autoencoders.autoencoder_kl", "AutoencoderKL")`."""
    for package in HEAVY_PACKAGES:
        _defer(package)
    with _optional_imports_deferred():
        return getattr(importlib.import_module(f"diffusers.{module}"), name)
