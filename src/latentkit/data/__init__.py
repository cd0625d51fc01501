"""Images in and out of latentkit: safe loading, tensors, image folders and the OpenMoji set."""

from latentkit.data.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageSet,
    image_to_tensor,
    load_image,
    load_image_folder,
    resize_center_crop,
    tensor_to_pil,
    tensor_to_uint8,
    to_rgb,
    uint8_to_tensor,
)
from latentkit.data.openmoji import (
    base_name,
    caption_for,
    default_cache_dir,
    list_named_emoji,
    load_openmoji,
    render_svg,
    svg_dir,
    test_split_mask,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageSet",
    "base_name",
    "caption_for",
    "default_cache_dir",
    "image_to_tensor",
    "list_named_emoji",
    "load_image",
    "load_image_folder",
    "load_openmoji",
    "render_svg",
    "resize_center_crop",
    "svg_dir",
    "tensor_to_pil",
    "tensor_to_uint8",
    "test_split_mask",
    "to_rgb",
    "uint8_to_tensor",
]
