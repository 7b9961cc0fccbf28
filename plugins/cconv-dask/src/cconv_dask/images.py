"""Image files to model inputs: Pillow, grey or RGB, resized to the model's input shape."""
import os

import numpy as np

__all__ = ["check_input_shape", "load_image", "load_images"]

_MODES = {1: "L", 3: "RGB"}


def check_input_shape(input_shape):
    """Image files can feed a model whose input is (1 or 3, H, W)."""
    if len(input_shape) != 3 or input_shape[0] not in _MODES:
        raise ValueError(f"image files need a model input of shape (C, H, W) with C 1 (grey) "
                         f"or 3 (RGB); the model takes {tuple(input_shape)}")


def load_image(path, input_shape, dtype=np.float32):
    """One image file as a (C, H, W) array in [0, 1] for a model with input_shape (C, H, W).

    C = 1 reads it as grey, C = 3 as RGB (Pillow's conversions, whatever the
    file holds); a different size is resized bilinearly to (H, W).
    """
    from PIL import Image, UnidentifiedImageError

    check_input_shape(input_shape)
    channels, height, width = (int(s) for s in input_shape)
    try:
        with Image.open(os.fspath(path)) as img:
            img = img.convert(_MODES[channels])
            if img.size != (width, height):
                img = img.resize((width, height), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{os.fspath(path)!r}: cannot read as an image ({exc})") from exc
    pixels = pixels.reshape(height, width, channels).transpose(2, 0, 1) / np.float32(255)
    return np.ascontiguousarray(pixels, dtype=dtype)


def load_images(paths, input_shape, dtype=np.float32, transform=None):
    """(N, C, H, W) array of the image files; transform(array) is applied to each image."""
    images = []
    for path in paths:
        image = load_image(path, input_shape, dtype)
        if transform is not None:
            image = np.asarray(transform(image), dtype=dtype)
            if image.shape != tuple(input_shape):
                raise ValueError(f"transform returned shape {image.shape} for {path!r}; the "
                                 f"model takes {tuple(input_shape)}")
        images.append(image)
    if not images:
        return np.empty((0,) + tuple(input_shape), dtype=dtype)
    return np.stack(images)
