"""Inference beyond one model call: tiled (sliding-window) inference and test-time augmentation.

`tiles` cuts a large image into overlapping tiles and blends their outputs back, `tta` averages a batch's
outputs over flips and rotations, `outputs` writes results strip by strip, and `tiled_model` applies them
to the zoo's models (`ZooModel.segment / restore / predict_depth(..., tile=, tta=)`).
"""

from kerazoo.inference.tiles import BLENDS, iter_tiled_strips, plan_axis, tiled_predict
from kerazoo.inference.tta import TTA_MODES, with_tta

__all__ = ["BLENDS", "TTA_MODES", "iter_tiled_strips", "plan_axis", "tiled_predict", "with_tta"]
