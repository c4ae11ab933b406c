"""What every task provides to the model builders: input scaling and an output head."""

from __future__ import annotations

import dataclasses

from kerazoo import layers
from kerazoo.tasks.heads import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class Task:
    """A task's facts, resolved for one model. Builders call `preprocess` and `head`, never test names.

    Attributes:
        num_classes: output channels (classes for segmentation).
        in_channels: input channels.
        activation: the head's output activation (None: logits or linear outputs).
        head_kind: "segmentation" or "regression" (what `create_model`'s `head` records).
    """

    num_classes: int
    in_channels: int
    activation: str | None = None
    head_kind: str = "regression"

    name = "task"
    #: Output height and width over input height and width (super-resolution: its scale).
    output_scale = 1

    @classmethod
    def option_defaults(cls) -> dict:
        """The task's own `create_model` options (recorded in `get_config()`) and their defaults."""
        return {}

    @classmethod
    def default_num_classes(cls, in_channels) -> int:
        raise NotImplementedError

    @classmethod
    def default_activation(cls):
        return None

    @classmethod
    def activations(cls, head_kind):
        return ACTIVATIONS[head_kind]

    def options(self) -> dict:
        """This task's option values, as `create_model` records them."""
        return {key: getattr(self, key) for key in self.option_defaults()}

    @property
    def score_channels(self) -> int:
        """Channels a builder that scores its features itself (FCN) gives `head(..., scored=True)`."""
        return self.num_classes

    def preprocess(self, inputs, encoder_mode):
        """Raw 0..255 pixels to what the network computes on; `encoder_mode` is the encoder's preprocessing."""
        return layers.EncoderPreprocessing(encoder_mode, name="preprocessing")(inputs)

    def head(self, x, inputs, kernel_size=1, scored=False):
        """Features (at the resolution `preprocess` gave) to the model's float32 outputs."""
        raise NotImplementedError

    def default_loss(self):
        """The loss `model.compile` gets when none is chosen."""
        raise NotImplementedError

    def default_metrics(self) -> list:
        """The metrics reported for this task."""
        raise NotImplementedError

    def check_covers(self, x, reference):
        """Raises when static shapes show that `x` does not cover `reference` (e.g. valid convolutions)."""
        x_size, ref_size = tuple(x.shape[1:3]), tuple(reference.shape[1:3])
        if None not in x_size + ref_size and x_size != ref_size:
            raise ValueError(f"task {self.name!r} needs features the size of the input; the network gives "
                             f"{x_size} for {ref_size} (unet_paper: pass padding='same')")
