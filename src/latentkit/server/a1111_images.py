"""AUTOMATIC1111's img2img image handling: the resize modes, its mask conventions (white =
regenerate, alpha masks, inversion) and its "masked content" fills."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageOps, ImageStat

from latentkit.server.interop import decode_image


def sized(image: Image.Image, body: Any) -> Image.Image:
    """The init image at the requested size: resize_mode 0 (and 3) stretch, 1 crops to fill,
    2 fits inside and pads with the edge colour."""
    image = image.convert("RGB")
    if body.width is None or body.height is None or (body.width, body.height) == image.size:
        return image
    size = (body.width, body.height)
    if body.resize_mode == 1:
        return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    if body.resize_mode == 2:
        edge = image.getpixel((0, 0))
        return ImageOps.pad(image, size, Image.Resampling.LANCZOS, color=edge)
    return image.resize(size, Image.Resampling.LANCZOS)


def mask_for(body: Any, image: Image.Image, max_bytes: int) -> Image.Image | None:
    """White = regenerate (AUTOMATIC1111's convention, `inpainting_mask_invert` flips it)."""
    if body.mask is None:
        return None
    mask = decode_image(body.mask, "mask", max_bytes)
    mask = mask.getchannel("A") if mask.mode in ("RGBA", "LA") and has_transparency(mask) else mask
    mask = mask.convert("L").resize(image.size, Image.Resampling.BILINEAR)
    return ImageOps.invert(mask) if body.inpainting_mask_invert else mask


def has_transparency(mask: Image.Image) -> bool:
    lo, _ = mask.getchannel("A").getextrema()
    return lo < 255


def filled(image: Image.Image, mask: Image.Image, fill: int) -> Image.Image:
    """AUTOMATIC1111's masked content: 0 `fill` (the unmasked colours' mean), 3 `latent
    nothing` (mid grey, the zero latent); 1 `original` and 2 `latent noise` keep the image."""
    if fill not in (0, 3):
        return image
    keep = ImageOps.invert(mask.point(lambda v: 255 if v > 127 else 0))
    colour = tuple(round(c) for c in image_mean(image, keep)) if fill == 0 else (128, 128, 128)
    out = image.copy()
    out.paste(colour, mask=mask.point(lambda v: 255 if v > 127 else 0))
    return out


def image_mean(image: Image.Image, where: Image.Image) -> list[float]:
    if where.getbbox() is None:
        return [128.0, 128.0, 128.0]
    return list(ImageStat.Stat(image, where).mean)
