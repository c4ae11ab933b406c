"""Tasks: what differs between segmentation, restoration and depth, kept out of the model builders.

A task names its input scaling (`preprocess`), its output head (`head`), its default loss and its
metrics. `create_model(..., task=...)` resolves the name and the task's options into a `Task` that the
builder calls; no builder tests a task's name.
"""

from __future__ import annotations

from kerazoo.tasks.base import Task
from kerazoo.tasks.depth import Depth
from kerazoo.tasks.restoration import SCALES, UPSAMPLERS, Denoise, SuperResolution
from kerazoo.tasks.segmentation import Segmentation
from kerazoo.utils.registry import Registry

__all__ = ["TASKS", "RESTORATION_TASKS", "Task", "Segmentation", "Denoise", "SuperResolution", "Depth", "SCALES", "UPSAMPLERS",
           "task_class", "list_tasks"]

TASKS = Registry("task")
for _task in (Segmentation, Denoise, SuperResolution, Depth):
    TASKS.register(_task.name, _task)
RESTORATION_TASKS = (Denoise.name, SuperResolution.name)  # image in, image out: restore(), PSNR/SSIM


def list_tasks():
    """Names of the tasks `create_model` takes."""
    return tuple(TASKS)


def task_class(name):
    """The `Task` class of `name`, or a ValueError naming the valid tasks."""
    return TASKS.get(name)
