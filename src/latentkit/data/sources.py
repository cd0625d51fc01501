"""Where training images come from, by name: the built-in OpenMoji set or a folder. Its own
module because it joins two loaders (images.py and openmoji.py) that must not import each
other."""

from __future__ import annotations

import numpy as np

from latentkit.data.images import ImageSet, load_image_folder


def training_images(data: str, size: int) -> ImageSet:
    """`openmoji` is the built-in set (training split only); anything else is an image folder."""
    if data == "openmoji":
        from latentkit.data.openmoji import load_openmoji

        images, is_test = load_openmoji(size)
        return images.subset(np.flatnonzero(~is_test))
    return load_image_folder(data, size)
