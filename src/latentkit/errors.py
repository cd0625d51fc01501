"""The errors users see.

Every message names the bad value and, where there is one, the fix. The CLI prints the message
alone (no traceback) and exits with code 2; the Python API raises these.
"""

from __future__ import annotations

import math

MAX_SEED = 2**63 - 1


class LatentkitError(Exception):
    """Base class: anything a user can cause and fix."""


class InvalidArgument(LatentkitError, ValueError):
    """A number, name or option out of its allowed range."""


class ImageError(LatentkitError, ValueError):
    """An image file that cannot be used: unreadable, truncated, too large or too small."""


class ModelFileError(LatentkitError, FileNotFoundError):
    """A model folder or file that is missing, truncated or does not match its config."""


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Refuse counts such as steps=0 before they become an empty loop or a division by zero."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, got {value}")
    return value


def check_finite(
    name: str, value: float, low: float | None = None, high: float | None = None
) -> float:
    """Refuse NaN, infinities and out-of-range floats: they would silently give black images."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value}")
    if low is not None and value < low:
        bound = f"in [{low}, {high}]" if high is not None else f"at least {low}"
        raise InvalidArgument(f"{name} must be {bound}, got {value}")
    if high is not None and value > high:
        bound = f"in [{low}, {high}]" if low is not None else f"at most {high}"
        raise InvalidArgument(f"{name} must be {bound}, got {value}")
    return value


def check_seed(seed: int) -> int:
    """Seeds feed torch.Generator.manual_seed, which takes 0..2^63-1 without wrapping."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgument(f"seed must be a whole number, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be in 0..2^63-1, got {seed}")
    return seed
