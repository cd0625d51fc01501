"""The outputs folder: every file the server writes or accepts, named by an id it checked.

Ids come from clients, so each is checked before it touches the file system: one name (letters,
digits, `_`, `-`, `.`), no `..`, no separators, no NUL, not absolute. Files are written to a
temporary name and renamed (`save_png`, `atomic_write_bytes`), so a crash never leaves half a file.
"""

from __future__ import annotations

import io
import re
import secrets
import time
from pathlib import Path
from typing import Any

from PIL import Image

from latentkit.data.images import MAX_PIXELS
from latentkit.errors import InvalidArgument
from latentkit.files import atomic_write_bytes
from latentkit.outputs import save_png

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
GALLERY = ("img-", "upload-")
IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".safetensors": "application/octet-stream",
    ".json": "application/json",
}


class NotFound(InvalidArgument):
    """An id that is well formed but names nothing stored: answered with 404."""


def check_id(value: str, field: str = "id") -> str:
    """Refuse anything that is not one plain file name: `../x`, `/etc/passwd`, `a\\0b`, `a/b`."""
    if not isinstance(value, str) or not ID.match(value) or ".." in value:
        raise InvalidArgument(
            f"{field} must be a plain name of letters, digits, '_', '-' or '.' (no '..', no "
            f"slashes, no NUL), got {value!r}"
        )
    return value


def is_upload(file_id: str) -> bool:
    """Whether an id names an image someone uploaded (rather than one the server made)."""
    return file_id.startswith("upload-")


def new_id(prefix: str) -> str:
    """Sortable by creation time, unguessable enough that ids do not collide across workers."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


class Storage:
    """Files under one root; directions in their own sub-folder so names cannot clash."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.directions = self.root / "directions"
        self.directions.mkdir(exist_ok=True)

    # -- finding -------------------------------------------------------------------------------

    def path(self, file_id: str, field: str = "id") -> Path:
        """The stored file named `file_id` (with its suffix), or NotFound naming the field."""
        check_id(file_id, field)
        path = self.root / file_id
        if path.parent != self.root or not path.is_file():
            raise NotFound(f"{field} {file_id!r} names no stored file")
        return path

    def image_path(self, file_id: str, field: str = "image") -> Path:
        path = self.path(file_id, field)
        if path.suffix not in (".png", ".jpg", ".webp"):
            raise InvalidArgument(f"{field} {file_id!r} is not an image")
        return path

    def direction_path(self, name: str, field: str = "direction") -> Path:
        check_id(name, field)
        path = self.directions / f"{name}.safetensors"
        if not path.is_file():
            known = ", ".join(self.direction_names()) or "none saved yet"
            raise NotFound(f"unknown {field} {name!r}; known: {known}")
        return path

    def direction_names(self) -> list[str]:
        return sorted(p.stem for p in self.directions.glob("*.safetensors"))

    def images(self, limit: int = 200, prefixes: tuple[str, ...] = GALLERY) -> list[Path]:
        """Images people made or brought (uploads in any format the server takes), newest
        first: not masks, morph frames, edit stops or maps, which belong to the job that made
        them (and temp files never show)."""
        suffixes = set(IMAGE_SUFFIXES.values())
        files = [
            p for p in self.root.iterdir() if p.suffix in suffixes and p.name.startswith(prefixes)
        ]
        files.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        return files[:limit]

    # -- writing -------------------------------------------------------------------------------

    def save_image(self, image: Image.Image, recipe: dict[str, Any], prefix: str = "img") -> str:
        file_id = f"{new_id(prefix)}.png"
        save_png(image, self.root / file_id, recipe)
        return file_id

    def save_upload(
        self, data: bytes, field: str = "file", kind: str = "upload"
    ) -> tuple[str, tuple[int, int]]:
        """Keep the uploaded bytes as they are (so a PNG keeps its recipe), once PIL has read
        them whole; anything else is refused naming the field."""
        try:
            with Image.open(io.BytesIO(data)) as img:
                image_kind = img.format
                if img.width * img.height > MAX_PIXELS:  # before decoding: no decompression bomb
                    raise InvalidArgument(
                        f"{field} is {img.width}x{img.height}, over {MAX_PIXELS} pixels"
                    )
                img.load()
                size = img.size
        except InvalidArgument:
            raise
        except Exception as e:  # PIL raises many types for hostile input
            raise InvalidArgument(f"{field} is not a readable image ({type(e).__name__})") from None
        if image_kind not in IMAGE_SUFFIXES:
            raise InvalidArgument(f"{field} must be a PNG, JPEG or WebP image, got {image_kind}")
        file_id = f"{new_id(kind)}{IMAGE_SUFFIXES[image_kind]}"
        atomic_write_bytes(self.root / file_id, data)
        return file_id, size

    def new_path(self, prefix: str, suffix: str) -> tuple[str, Path]:
        """A fresh id and its path, for writers that do their own temp-and-rename."""
        file_id = f"{new_id(prefix)}{suffix}"
        return file_id, self.root / file_id
