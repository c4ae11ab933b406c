"""A synthetic data set of coloured shapes on noise: the embedded default that needs no files."""

from __future__ import annotations

import numpy as np

__all__ = ["generate_shapes"]

_SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


def generate_shapes(
    num_examples: int,
    image_size: tuple[int, int] = (64, 64),
    seed: int = 0,
    split: str = "train",
    max_shapes: int = 4,
    noise: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws images of circles (class 1), squares (2) and triangles (3) on a noisy background (0).

    Shapes get random bright colours, so the class must be read from the outline, not the colour.
    Later shapes occlude earlier ones and the mask labels whatever is on top.

    Args:
        num_examples: Number of images.
        image_size: `(height, width)`.
        seed: Seed; each split draws from its own stream, so train and val never coincide.
        split: "train", "val" or "test".
        max_shapes: Each image gets 1..max_shapes shapes.
        noise: Standard deviation of the background noise, on the 0..255 scale.

    Returns:
        `(images uint8 (N, H, W, 3), masks uint8 (N, H, W))`.
    """
    if split not in _SPLIT_STREAMS:
        raise ValueError(f"shapes has splits {sorted(_SPLIT_STREAMS)}, got split={split!r}")
    if num_examples < 1 or max_shapes < 1:
        raise ValueError("num_examples and max_shapes must be >= 1")
    height, width = image_size
    if min(height, width) < 8:
        raise ValueError(f"image_size must be at least 8x8, got {image_size}")
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = np.empty((num_examples, height, width, 3), np.uint8)
    masks = np.zeros((num_examples, height, width), np.uint8)
    small = min(height, width)
    for i in range(num_examples):
        background = rng.uniform(0, 90, size=3)
        image = background + rng.normal(0, noise, size=(height, width, 3))
        mask = masks[i]
        for _ in range(rng.integers(1, max_shapes + 1)):
            label = int(rng.integers(1, 4))
            radius = rng.uniform(small / 10, small / 4)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            if label == 1:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            elif label == 2:
                inside = (np.abs(yy - cy) <= 0.85 * radius) & (np.abs(xx - cx) <= 0.85 * radius)
            else:  # apex up: below the top vertex, inside both slanted edges
                dy = yy - (cy - radius)
                inside = (dy >= 0) & (yy <= cy + radius) & (np.abs(xx - cx) <= dy / 2)
            colour = rng.uniform(130, 255, size=3)
            image[inside] = colour + rng.normal(0, noise / 2, size=(int(inside.sum()), 3))
            mask[inside] = label
        images[i] = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return images, masks
