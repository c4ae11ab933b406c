"""Test-time augmentation: run a batch under flips and rotations, undo each, average the outputs.

"flip" is the identity and the horizontal flip; "d4" the 8 symmetries of the square (rotations by 0,
90, 180, 270 degrees, each with and without a horizontal flip). A 90 or 270 degree rotation swaps height
and width, so it is used only where the batch is square or the model takes any size; a non-square batch
through a model of one fixed size gets the 4 others. What is averaged is what the model returns (logits
for a segmentation head without activation, pixels for a restorer, depths), after each output is
transformed back, so a super-resolver's outputs at `scale` times the size are undone the same way.

Plain NumPy around a "predict a batch" callable, so it composes with tiling (`kerazoo.inference.tiles`:
each batch of tiles is augmented) and works with any Keras backend.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

__all__ = ["TTA_MODES", "Transform", "check_tta", "transforms", "with_tta"]

TTA_MODES = ("flip", "d4")


@dataclasses.dataclass(frozen=True)
class Transform:
    """One symmetry of the image plane, on (B, H, W, C) batches.

    Attributes:
        quarter_turns: counter-clockwise rotations by 90 degrees (0..3), after the flip.
        flip: mirror left-right first.
    """

    quarter_turns: int = 0
    flip: bool = False

    @property
    def name(self) -> str:
        parts = (["hflip"] if self.flip else []) + ([f"rot{90 * self.quarter_turns}"] if self.quarter_turns else [])
        return "+".join(parts) or "identity"

    @property
    def transposes(self) -> bool:
        """Whether it swaps height and width."""
        return self.quarter_turns % 2 == 1

    def forward(self, batch: np.ndarray) -> np.ndarray:
        batch = batch[:, :, ::-1] if self.flip else batch
        return np.rot90(batch, self.quarter_turns, axes=(1, 2))

    def inverse(self, batch: np.ndarray) -> np.ndarray:
        batch = np.rot90(batch, -self.quarter_turns, axes=(1, 2))
        return batch[:, :, ::-1] if self.flip else batch


def check_tta(tta):
    """Validates a TTA mode: None (off) or one of `TTA_MODES`."""
    if tta is not None and tta not in TTA_MODES:
        raise ValueError(f"tta must be None or one of {', '.join(map(repr, TTA_MODES))}; got {tta!r}")
    return tta


def transforms(tta: str, height: int, width: int, any_size: bool = True) -> list[Transform]:
    """The transforms of a mode for a batch of height x width (identity first).

    Args:
        tta: "flip" or "d4".
        height, width: the batch's size.
        any_size: whether the model takes any size; if not, transposing ones are used only when square.
    """
    check_tta(tta)
    if tta == "flip":
        return [Transform(), Transform(flip=True)]
    every = [Transform(turns, flip) for flip in (False, True) for turns in range(4)]
    if any_size or height == width:
        return every
    return [t for t in every if not t.transposes]


def with_tta(predict_batch: Callable[[np.ndarray], np.ndarray], tta: str | None, *,
             any_size: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """`predict_batch` under test-time augmentation: the mean of each transform's output, transformed back.

    Args:
        predict_batch: takes a (B, H, W, C) batch and returns (B, h, w, K) outputs (any scale of H, W).
        tta: None (returns `predict_batch` itself), "flip" or "d4".
        any_size: whether `predict_batch` takes any height and width (else transposes only square batches).

    Returns:
        A callable with the same signature, returning float32 NumPy outputs.
    """
    if check_tta(tta) is None:
        return predict_batch

    def predict(batch):
        batch = np.asarray(batch, dtype=np.float32)
        chosen = transforms(tta, batch.shape[1], batch.shape[2], any_size)
        total = None
        for transform in chosen:
            output = np.asarray(predict_batch(np.ascontiguousarray(transform.forward(batch))), dtype=np.float32)
            output = transform.inverse(output)
            total = output.copy() if total is None else total + output
        return total / len(chosen)

    return predict
