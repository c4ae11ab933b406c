"""`ZooModel`: the zoo's model class, a functional Keras model that knows its task.

Like keras-hub's `Task` (and smp's `SegmentationModel`), the model carries what a user otherwise has
to recover from side files: the `create_model` arguments that rebuild it, its head, class names and
colours, and the (height, width) it was trained at. `get_config()` is those arguments at the top
level, so a `.keras` file or a preset's config.json reads as the `create_model` call, and
`from_config` rebuilds through `create_model` (never downloading encoder weights).

What depends on the task is kept to named parts: the task (`kerazoo.tasks`) chose the input scaling
and the head; the methods turn outputs into what a user wants: `segment` gives labels, `restore` images
(denoised, or `scale` times larger), `predict_depth` metres. `_outputs_at_image_size` is the shared
"resize in, run, resize out" step.
"""

from __future__ import annotations

import functools
import inspect

import keras
import numpy as np

from kerazoo.encoders import ENCODERS
from kerazoo.models.registry import MODELS
from kerazoo.inference.tiled_model import run_tiled
from kerazoo.inference.tta import with_tta
from kerazoo.optimizers import fast_optimizer  # also registers kerazoo>Adam for loading compiled .keras files
from kerazoo.tasks import RESTORATION_TASKS, Segmentation, task_class
from kerazoo.tasks.heads import check_head, scores_to_labels
from kerazoo.utils.images import resize_image
from kerazoo.utils.sizes import height_width

__all__ = ["ZooModel", "check_task_attributes", "create_model"]

# Config keys that describe the trained model but are not `create_model` builder arguments.
TASK_KEYS = ("class_names", "class_colors", "input_size")
INFO_KEYS = ("preprocessing",)
CLASS_HEADS = ("segmentation", "multilabel")  # heads whose channels are classes (or labels)


def check_task_attributes(head, num_classes, class_names=None, class_colors=None, input_size=None,
                          input_shape=None):
    """Validates and normalises the task attributes `create_model` takes.

    Returns:
        (class_names, class_colors, input_size) as tuples (or None), JSON-friendly.

    Raises:
        ValueError: naming the bad value and what would be valid.
    """
    # A one-channel (sigmoid) segmentation head still has two classes: background and foreground.
    expected = 2 if head == "segmentation" and num_classes == 1 else num_classes
    if class_names is not None:
        if head not in CLASS_HEADS:
            raise ValueError(f"class_names are for head='segmentation' or 'multilabel'; head={head!r} has output "
                             "channels, not classes")
        if isinstance(class_names, str) or not all(isinstance(n, str) and n for n in class_names):
            raise ValueError(f"class_names must be a sequence of non-empty strings; got {class_names!r}")
        class_names = tuple(class_names)
        if len(class_names) != expected:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes} "
                             f"(expected {expected}): {list(class_names)}")
    if class_colors is not None:
        if head not in CLASS_HEADS:
            raise ValueError(f"class_colors are for head='segmentation' or 'multilabel'; got head={head!r}")
        colors = []
        for color in class_colors:
            color = tuple(color) if not isinstance(color, str) else ()
            if len(color) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in color):
                raise ValueError(f"class_colors must be (r, g, b) triples of ints in 0..255; got {color!r}")
            colors.append(tuple(int(c) for c in color))
        if len(colors) != expected:
            raise ValueError(f"{len(colors)} class_colors for num_classes={num_classes} (expected {expected})")
        class_colors = tuple(colors)
    static = tuple(input_shape[:2]) if input_shape is not None and None not in tuple(input_shape[:2]) else None
    if input_size is not None:
        input_size = height_width(input_size, "input_size")
        if static is not None and input_size != static:
            raise ValueError(f"input_size={input_size} disagrees with the static input_shape {tuple(input_shape)}")
    elif static is not None:
        input_size = height_width(static, "input_shape[:2]")  # a static model can only run at that size
    return class_names, class_colors, input_size


def _as_image_list(images, in_channels):
    """(list of HxWxC float32 arrays, how to return results): 'single', 'batch' or 'list'."""
    if isinstance(images, (list, tuple)):
        kind, items = "list", list(images)
    else:
        array = np.asarray(images)
        if array.ndim == 4:
            kind, items = "batch", list(array)
        elif array.ndim in (2, 3):
            kind, items = "single", [array]
        else:
            raise ValueError(f"images must be HxWxC, a batch NxHxWxC or a list of HxWxC arrays; got shape "
                             f"{array.shape}")
    arrays = []
    for index, image in enumerate(items):
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:  # a grey image without its channel axis
            image = image[..., None]
        if image.ndim == 3 and image.shape[-1] != in_channels:
            raise ValueError(channel_mismatch_message(in_channels, image.shape, f"image {index}: the model"))
        if image.ndim != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"image {index} has shape {image.shape}; the model takes HxWx{in_channels} raw pixels")
        arrays.append(image)
    return arrays, kind


def channel_mismatch_message(expected, shape, what="the model"):
    """Says that images of `shape` do not have the `expected` channels, and how to convert them."""
    received = shape[-1] if len(shape) > 2 else 1
    kinds = {1: "grey", 3: "RGB", 4: "RGBA"}
    names = lambda count: f"{count} ({kinds[count]})" if count in kinds else str(count)  # noqa: E731
    if expected == 3 and received == 1:
        how = "np.repeat(images[..., :1], 3, axis=-1), or PIL's Image.convert('RGB') before reading the pixels"
    elif expected == 1 and received in (3, 4):
        how = "PIL's Image.convert('L') before reading the pixels (ITU-R BT.601 luma), as kerazoo's loaders do"
    elif expected == 3 and received == 4:
        how = "images[..., :3] (drop alpha), or PIL's Image.convert('RGB')"
    else:
        how = f"a model built with in_channels={received} (create_model(..., in_channels={received}))"
    return (f"{what} takes images with {names(expected)} channels; got {names(received)} channels (input shape "
            f"{tuple(shape)}). Convert them first: {how}.")


def _in_input_form(arrays, kind):
    """Per-image results in the form the images came in (`_as_image_list`'s kind): one array for
    'single', a stacked array for 'batch', the list for 'list'."""
    if kind == "single":
        return arrays[0]
    return np.stack(arrays) if kind == "batch" else arrays


def _to_uint8_image(output):
    """Restored pixels rounded and clipped to uint8; one channel loses its axis."""
    image = np.clip(np.rint(output), 0, 255).astype(np.uint8)
    return image[..., 0] if image.shape[-1] == 1 else image


def _resize_image(image, size):
    """`image` at `size`, resized as the data pipeline resizes training images (`resize_image`)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return np.asarray(resize_image(image, size))


@keras.saving.register_keras_serializable(package="kerazoo")
class ZooModel(keras.Model):
    """A functional model built by `kerazoo.create_model`, carrying its arguments and its task.

    Build it with `kerazoo.create_model` (or `kerazoo.from_preset`), not directly.

    Args:
        inputs: the functional inputs (raw 0..255 pixels, (B, H, W, in_channels)).
        outputs: the functional outputs ((B, H, W, num_classes) float32).
        arguments: `create_model`'s resolved arguments: name, encoder, num_classes, in_channels,
            input_shape, head, activation and the model's options.
        class_names: one name per class (segmentation), or None.
        class_colors: one (r, g, b) per class, or None.
        input_size: the (height, width) it was trained at; `segment` resizes to it. None runs images as they come.
        name: the Keras model name.

    Attributes:
        num_classes: classes of a segmentation head, or output channels.
        head: "segmentation" or "regression".
        activation: the head's activation (None: logits).
        in_channels: input channels.
        config_name: the `create_model` name, e.g. "unet".
        encoder_name: the encoder's name, or None for a fixed topology.
        class_names: one name per class, or None.
        class_colors: one (r, g, b) per class, or None.
        input_size: the (height, width) it was trained at, or None.
        task: the task's name, e.g. "segmentation" or "denoise".
        task_spec: its `kerazoo.tasks.Task`: default loss and metrics.
        scale: the super-resolution factor, else 1.
    """

    def __init__(self, inputs, outputs, *, arguments, class_names=None, class_colors=None, input_size=None,
                 name=None, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)
        arguments = dict(arguments)
        self.class_names, self.class_colors, self.input_size = check_task_attributes(
            arguments["head"], arguments["num_classes"], class_names, class_colors, input_size,
            arguments.get("input_shape"))
        # A tuple of pairs: Keras tracks (and would wrap) dicts set on a model.
        self._argument_items = tuple(arguments.items())

    @property
    def arguments(self) -> dict:
        """The `create_model` arguments that rebuild this model (a copy)."""
        return dict(self._argument_items)

    @property
    def num_classes(self) -> int:
        return self.arguments["num_classes"]

    @property
    def head(self) -> str:
        return self.arguments["head"]

    @property
    def activation(self):
        return self.arguments["activation"]

    @property
    def in_channels(self) -> int:
        return self.arguments["in_channels"]

    @property
    def task(self) -> str:
        """The task: "segmentation" (configs written before tasks existed), "denoise", "super_resolution"
        or "depth"."""
        return self.arguments.get("task", "segmentation")

    @property
    def task_spec(self):
        """The resolved `kerazoo.tasks.Task`: `model.task_spec.default_loss()`, `.default_metrics()`."""
        cls = task_class(self.task)
        options = {key: self.arguments[key] for key in cls.option_defaults()}
        return cls(self.num_classes, self.in_channels, self.activation, self.head, **options)

    @property
    def scale(self) -> int:
        """Output size over input size: the super-resolution scale, else 1."""
        return self.arguments.get("scale", 1) if self.task == "super_resolution" else 1

    @property
    def config_name(self) -> str:
        return self.arguments["name"]

    @property
    def encoder_name(self):
        return self.arguments.get("encoder")

    @property
    def preprocessing(self) -> dict:
        """How inputs are read: raw pixels, normalised inside the model by its "preprocessing" layer."""
        try:
            layer = self.get_layer("preprocessing")
        except ValueError:
            layer = None
        mode = layer.get_config().get("mode") if layer is not None else None
        if isinstance(layer, keras.layers.Rescaling):  # restoration: pixels / 255
            mode = f"scale by {layer.get_config()['scale']:.6g}"
        return {"input": "raw pixels 0..255, (B, H, W, in_channels) float32", "normalization": mode,
                "resize": "bilinear (antialiased) to input_size" if self.input_size else None}

    def __call__(self, *args, **kwargs):
        # Keras' own message for a wrong channel count names an internal layer's input spec; say it plainly.
        images = args[0] if args else kwargs.get("inputs")
        shape = getattr(images, "shape", None)
        if shape is not None and len(shape) == 4 and shape[-1] is not None and shape[-1] != self.in_channels:
            raise ValueError(channel_mismatch_message(self.in_channels, tuple(shape), f"{self.config_name}"))
        return super().__call__(*args, **kwargs)

    def get_config(self):
        """The `create_model` arguments at the top level, then class names, colours, input size and
        (informational, recomputed on load) preprocessing."""
        config = self.arguments
        if config.get("input_shape") is not None:
            config["input_shape"] = list(config["input_shape"])
        config.update(
            class_names=list(self.class_names) if self.class_names else None,
            class_colors=[list(c) for c in self.class_colors] if self.class_colors else None,
            input_size=list(self.input_size) if self.input_size else None,
            preprocessing=self.preprocessing,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuilds through `create_model` with `encoder_weights=None`; the weights come from the file."""
        config = {key: value for key, value in config.items() if key not in INFO_KEYS}
        if config.get("input_shape") is not None:
            config["input_shape"] = tuple(config["input_shape"])
        name = config.pop("name")
        return create_model(name, encoder_weights=None, **config)

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        """`keras.Model.compile`, then the optimizer's variables are made at once (the model is built).

        Otherwise the TensorFlow backend creates them while tracing the first training step, which makes
        tf.function trace that step twice: about half of the first step's time (benchmarks/BENCHMARK.md).
        The names "adam" and "adamw" give `kerazoo.optimizers.Adam` / `AdamW`: Keras' optimizers with a
        fused update that traces one op per variable on TensorFlow (same results).
        """
        super().compile(fast_optimizer(optimizer), *args, **kwargs)
        if self.built and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Compiles a loaded `.keras` file as Keras does: Keras skips that for any model whose `compile` is
        overridden, and this one only adds the optimizer build."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict`; one in-memory batch (at most `batch_size`, default 32, images) goes
        straight to the compiled predict function (`predict_on_batch`): same outputs, without the data
        pipeline and callbacks that `predict` sets up per call (2.2x a tf.function's time at batch 1)."""
        if (steps is None and not callbacks and hasattr(x, "shape") and hasattr(x, "dtype") and len(x.shape) > 0
                and x.shape[0] is not None and x.shape[0] <= (batch_size or 32)):
            return self.predict_on_batch(x)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    def _outputs_at_image_size(self, images, batch_size, tta=None):
        """Runs each image at `input_size` (when set) and resizes the outputs back to its own size; `tta`
        averages each batch over flips (and rotations), see `kerazoo.inference.tta`.

        Returns:
            (list of (H, W, channels) float32 arrays, one per image, 'single' | 'batch' | 'list').
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        arrays, kind = _as_image_list(images, self.in_channels)
        predict = with_tta(self.predict_on_batch, tta, any_size=None in tuple(self.input_shape[1:3]))
        # Images that reach the model at the same size share batches.
        groups = {}
        for index, image in enumerate(arrays):
            groups.setdefault(self.input_size or image.shape[:2], []).append(index)
        results = [None] * len(arrays)
        for size, indices in groups.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                batch = keras.ops.stack([_resize_image(arrays[i], size) for i in chunk])
                # predict_on_batch: the compiled predict function, traced once per shape (an eager call
                # dispatches each op from Python; predict() adds a data pipeline per call).
                outputs = predict(batch)
                if tuple(outputs.shape[1:3]) != tuple(batch.shape[1:3]):
                    raise ValueError(f"{self.config_name} returns {tuple(outputs.shape[1:3])} for a "
                                     f"{tuple(batch.shape[1:3])} input; its outputs do not cover the input, so "
                                     "they cannot be resized back to the image")
                for i, output in zip(chunk, outputs):
                    height, width = arrays[i].shape[:2]
                    if tuple(output.shape[:2]) != (height, width):
                        output = keras.ops.image.resize(output, (height, width), interpolation="bilinear")
                    results[i] = keras.ops.convert_to_numpy(output).astype(np.float32)
        return results, kind

    def segment(self, images, batch_size: int = 8, *, tile=None, overlap: float = 0.25, blend: str = "gaussian",
                tta: str | None = None, out=None, progress=None):
        """Class labels at each image's own size, resizing to the trained `input_size` inside (or tiled).

        Each image is resized to `input_size` (bilinear, antialiased, as in training) when that is
        set, run through the model, and its scores are resized back to the image's size (bilinear on
        the logits) before the argmax (one sigmoid channel: foreground where the logit is positive).

        Args:
            images: raw 0..255 pixels: one HxWxC array, a batch NxHxWxC, or a list of HxWxC arrays
                of different sizes (HxW for one-channel models).
            batch_size: images per model call.
            tile: run in overlapping tiles of this size (an int or (height, width), a multiple of the
                model's stride) at the image's own resolution, without resizing to `input_size`, and blend
                them (`kerazoo.inference.tiles`); `batch_size` is then tiles per model call.
            overlap: with `tile`: the fraction of a tile shared with each neighbour, in [0, 1).
            blend: with `tile`: "gaussian" (MONAI's weight map) or "constant".
            tta: test-time augmentation: None, "flip" (identity and horizontal flip) or "d4" (8 flips and
                rotations); the outputs are averaged after undoing each (`kerazoo.inference.tta`).
            out: with `tile`, one image: write the result to this ".png" or ".npy" file strip by strip
                (never holding the whole float result) and return its path.
            progress: with `tile`: a progress bar over the tiles; None shows it on a terminal.

        Returns:
            int32 labels: HxW for one image, NxHxW for a batch, a list of HxW arrays for a list (or the
            path of `out`). A head="multilabel" model gives boolean HxWxK arrays instead (NxHxWxK for a
            batch): each label on where its sigmoid probability is above 0.5.
        """
        if self.task != "segmentation":
            raise ValueError(f"segment() is for segmentation; this is a {self.task!r} model: use "
                             f"{_TASK_METHODS[self.task]}")
        if self.head not in CLASS_HEADS:
            raise ValueError(f"segment() needs head='segmentation' or 'multilabel'; this model's head is "
                             f"{self.head!r}")
        if tile is not None or out is not None:
            return run_tiled(self, images, functools.partial(scores_to_labels, activation=self.activation,
                                                             head=self.head),
                             tile=tile, overlap=overlap, blend=blend, tta=tta, batch_size=batch_size, out=out,
                             progress=progress)
        outputs, kind = self._outputs_at_image_size(images, batch_size, tta)
        labels = [scores_to_labels(output, self.activation, self.head) for output in outputs]
        return _in_input_form(labels, kind)

    def restore(self, images, batch_size: int = 8, *, tile=None, overlap: float = 0.25, blend: str = "gaussian",
                tta: str | None = None, out=None, progress=None):
        """Restored images (denoised, or super-resolved by `scale`), rounded and clipped to uint8.

        Each image runs at its own size (any height and width; same-sized images share batches), so a
        super-resolver returns `scale` times each image's height and width.

        Args:
            images: raw 0..255 pixels: one HxWxC array, a batch NxHxWxC, or a list of HxWxC arrays
                of different sizes (HxW for one-channel models).
            batch_size: images per model call.
            tile: run in overlapping tiles of this size (an int or (height, width), a multiple of the
                model's stride) and blend them, a super-resolver's at the output's scale
                (`kerazoo.inference.tiles`); `batch_size` is then tiles per model call.
            overlap: with `tile`: the fraction of a tile shared with each neighbour, in [0, 1).
            blend: with `tile`: "gaussian" (MONAI's weight map) or "constant".
            tta: test-time augmentation: None, "flip" (identity and horizontal flip) or "d4" (8 flips and
                rotations); the outputs are averaged after undoing each (`kerazoo.inference.tta`).
            out: with `tile`, one image: write the result to this ".png" or ".npy" file strip by strip
                (never holding the whole float result) and return its path.
            progress: with `tile`: a progress bar over the tiles; None shows it on a terminal.

        Returns:
            uint8 images (HxWxC, or HxW for one channel): one array for one image, an array for a
            batch, a list for a list (or the path of `out`).

        Raises:
            ValueError: for a model that is not a restoration model (naming the method to use), or
                for a model with a static input size the images do not have.
        """
        if self.task not in RESTORATION_TASKS:
            raise ValueError(f"restore() is for the 'denoise' and 'super_resolution' tasks; this is a "
                             f"{self.task!r} model: use {_TASK_METHODS[self.task]}")
        if tile is not None or out is not None:
            return run_tiled(self, images, _to_uint8_image, tile=tile, overlap=overlap, blend=blend, tta=tta,
                             batch_size=batch_size, out=out, progress=progress)
        outputs, kind = self._run_at_own_size(images, batch_size, tta)
        restored = []
        for output in outputs:
            restored.append(_to_uint8_image(output))
        return _in_input_form(restored, kind)

    def predict_depth(self, images, batch_size: int = 8, *, tile=None, overlap: float = 0.25,
                      blend: str = "gaussian", tta: str | None = None, out=None, progress=None):
        """Depth in metres at each image's own size (float32 HxW), resizing to `input_size` inside when set.

        Args:
            images: raw 0..255 RGB pixels: one HxWx3 array, a batch, or a list of arrays of different sizes.
            batch_size: images per model call.
            tile: run in overlapping tiles of this size (an int or (height, width), a multiple of the
                model's stride) at the image's own resolution, without resizing to `input_size`, and blend
                them (`kerazoo.inference.tiles`); `batch_size` is then tiles per model call.
            overlap: with `tile`: the fraction of a tile shared with each neighbour, in [0, 1).
            blend: with `tile`: "gaussian" (MONAI's weight map) or "constant".
            tta: test-time augmentation: None, "flip" (identity and horizontal flip) or "d4" (8 flips and
                rotations); the outputs are averaged after undoing each (`kerazoo.inference.tta`).
            out: with `tile`, one image: write the result to this ".npy" file strip by strip
                (never holding the whole float result) and return its path.
            progress: with `tile`: a progress bar over the tiles; None shows it on a terminal.

        Returns:
            float32 depth: HxW for one image, NxHxW for a batch, a list of HxW arrays for a list (or the
            path of `out`).
        """
        if self.task != "depth":
            raise ValueError(f"predict_depth() is for the 'depth' task; this is a {self.task!r} model: use "
                             f"{_TASK_METHODS[self.task]}")
        if tile is not None or out is not None:
            return run_tiled(self, images, lambda strip: strip[..., 0], tile=tile, overlap=overlap, blend=blend,
                             tta=tta, batch_size=batch_size, out=out, progress=progress)
        outputs, kind = self._outputs_at_image_size(images, batch_size, tta)
        depths = [output[..., 0] for output in outputs]
        return _in_input_form(depths, kind)

    def _run_at_own_size(self, images, batch_size, tta=None):
        """Runs each image as it is (no resize) and checks the output is `scale` times its size; `tta`
        averages each batch over flips (and rotations)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        arrays, kind = _as_image_list(images, self.in_channels)
        static = tuple(self.input_shape[1:3])
        predict = with_tta(lambda batch: keras.ops.convert_to_numpy(self(batch, training=False)), tta,
                           any_size=None in static)
        groups = {}
        for index, image in enumerate(arrays):
            if None not in static and tuple(image.shape[:2]) != static:
                raise ValueError(f"image {index} is {image.shape[:2]}; this model was built for {static} only "
                                 "(build it with input_shape=None to take any size)")
            groups.setdefault(image.shape[:2], []).append(index)
        results = [None] * len(arrays)
        for (height, width), indices in groups.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                outputs = predict(np.stack([arrays[i] for i in chunk]))
                expected = (height * self.scale, width * self.scale)
                if tuple(outputs.shape[1:3]) != expected:
                    raise ValueError(f"{self.config_name} returns {tuple(outputs.shape[1:3])} for a "
                                     f"{(height, width)} input; expected {expected}")
                for i, output in zip(chunk, outputs):
                    results[i] = output.astype(np.float32)
        return results, kind


_TASK_METHODS = {"segmentation": "segment()", "denoise": "restore()", "super_resolution": "restore()",
                 "depth": "predict_depth()"}


def model_num_classes(model) -> int | None:
    """`model.num_classes` for a ZooModel; for a plain Keras model, its output channels (or None)."""
    if isinstance(model, ZooModel):
        return model.num_classes
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    return None if shape is None or shape[-1] is None else int(shape[-1])


def _option_defaults(builder):
    """The builder's model options with their defaults (what an omitted option means)."""
    bound = getattr(builder, "keywords", {})  # fixed by the registry's functools.partial (fcn8s: output_stride)
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.name not in _NOT_OPTIONS and parameter.name not in bound
        and parameter.default is not inspect.Parameter.empty
    }


_NOT_OPTIONS = ("spec", "num_classes", "encoder_weights", "in_channels", "input_shape", "activation", "task")


def _resolve_task(task, head, activation, num_classes, in_channels, options):
    """The `kerazoo.tasks.Task` for these arguments; takes the task's own options out of `options`."""
    cls = task_class(task)
    task_options = {key: options.pop(key, default) for key, default in cls.option_defaults().items()}
    if cls is Segmentation:
        head = head or "segmentation"
    elif head not in (None, "regression"):
        raise ValueError(f"task={task!r} has a regression head; got head={head!r} (leave it out)")
    head = head or "regression"
    if activation is None:
        activation = cls.default_activation()
    if cls is not Segmentation and activation not in cls.activations(head):
        raise ValueError(f"activation for task={task!r} must be one of {cls.activations(head)}; got {activation!r}")
    if num_classes is None:
        num_classes = cls.default_num_classes(in_channels)
    check_head(head, activation, num_classes)
    return cls(num_classes, in_channels, activation, head, **task_options)


def create_model(
    name,
    encoder=None,
    num_classes=None,
    encoder_weights=None,
    in_channels=None,
    input_shape=None,
    head=None,
    activation=None,
    class_names=None,
    class_colors=None,
    input_size=None,
    task="segmentation",
    **options,
):
    """Builds a registered model.

    Args:
        name: a name from `list_models()`, e.g. "unet", "segnet", "fcn8s", "unet_paper".
        encoder: a name from `list_encoders()` the model supports; None takes the model's default.
            Models with a fixed topology of their own ("unet_paper", "segnet_basic") take none.
        num_classes: classes of the segmentation head, or output channels of a regression head.
            None: 2 for segmentation, in_channels for "denoise" and "super_resolution", 1 for "depth".
        encoder_weights: None (random), "imagenet" (Keras Applications' download) or a weights file.
        in_channels: input channels; with pretrained weights and a count other than 3 the first
            convolution is adapted from the RGB kernel. Defaults to input_shape's, else 3 (1 for unet_paper).
        input_shape: (height, width, channels); None sizes accept any size (the default).
        head: "segmentation", "multilabel" or "regression" for task="segmentation" (None:
            "segmentation"); the other tasks have a regression head of their own. "segmentation" with
            num_classes=1 and activation="sigmoid" (or logits) is a binary head for 0/1 masks;
            "multilabel" is num_classes independent labels (logits, or activation="sigmoid") trained on
            (H, W, num_classes) 0/1 masks, and `segment` returns HxWxK booleans.
        activation: None gives logits (segmentation) or linear outputs (regression); also "softmax",
            "sigmoid" (and "tanh", "relu", "softplus" for regression). Depth: "softplus" (default) or "relu".
        class_names: one name per class (segmentation only; two for a one-channel binary head).
        class_colors: one (r, g, b) triple of 0..255 ints per class, for pictures.
        input_size: the (height, width) the model is trained at; `model.segment` resizes images to
            it and its labels back. Defaults to input_shape's height and width when those are static.
        task: one of `kerazoo.tasks.list_tasks()`: "segmentation", "denoise", "super_resolution" or
            "depth". Restoration models scale pixels to [0, 1] inside (not ImageNet preprocessing) and
            return 0..255 pixels; depth models return metres.
        **options: model-specific options, e.g. for "unet": decoder_filters, upsampling, batch_norm;
            for encoder models: freeze_encoder, encoder_bn_momentum; for "unet_paper": padding ("same"
            for restoration and depth). Task options: denoise: residual (predict the noise, default
            True); super_resolution: scale (2, 3, 4), residual (bilinear upsample + detail, default
            True), upsampler ("subpixel", "transpose", "bilinear"). An unknown option raises a
            ValueError listing the valid ones.

    Returns:
        A `kerazoo.models.model.ZooModel` from raw 0..255 pixels (B, H, W, in_channels) to (B, H, W, num_classes)
        float32 outputs (unet_paper: its smaller valid-convolution output; super-resolution: scale
        times H and W). Its `get_config()` holds these arguments (with every option's value) and rebuilds it.
    """
    entry = MODELS.get(name)
    name = name.lower()
    if in_channels is None:
        in_channels = input_shape[-1] if input_shape is not None else entry.default_in_channels
    options = dict(options)
    task_spec = _resolve_task(task, head, activation, num_classes, in_channels, options)
    head, activation, num_classes = task_spec.head_kind, task_spec.activation, task_spec.num_classes
    defaults = _option_defaults(entry.builder)
    for option in options:
        if option not in defaults:
            raise ValueError(f"Unknown option {option!r} for model {name!r} and task {task!r}. "
                             f"Valid options: {', '.join([*defaults, *task_spec.option_defaults()]) or 'none'}.")
    attributes = check_task_attributes(head, num_classes, class_names, class_colors, input_size, input_shape)
    options = {**defaults, **options}
    arguments = dict(num_classes=num_classes, in_channels=in_channels, input_shape=input_shape,
                     activation=activation, task=task_spec, **options)
    if entry.encoders is None:
        if encoder is not None or encoder_weights is not None:
            raise ValueError(f"Model {name!r} has a fixed topology of its own and takes no encoder or "
                             f"encoder_weights; got encoder={encoder!r}, encoder_weights={encoder_weights!r}")
        built = entry.builder(**arguments)
    else:
        encoder = encoder or entry.default_encoder
        if not isinstance(encoder, str) or encoder.lower() not in entry.encoders:
            raise ValueError(f"Model {name!r} cannot use encoder {encoder!r}. "
                             + ENCODERS.unknown_message(encoder, valid=entry.encoders).split(". ", 1)[-1])
        encoder = encoder.lower()
        built = entry.builder(ENCODERS.get(encoder), encoder_weights=encoder_weights, **arguments)
    record = dict(name=name, encoder=encoder, num_classes=num_classes, in_channels=in_channels,
                  input_shape=tuple(input_shape) if input_shape is not None else None, head=head,
                  activation=activation, **options, task=task_spec.name, **task_spec.options())
    record = {key: list(value) if isinstance(value, tuple) and key != "input_shape" else value
              for key, value in record.items()}
    class_names, class_colors, input_size = attributes
    return ZooModel(built.input, built.output, arguments=record, class_names=class_names,
                    class_colors=class_colors, input_size=input_size, name=built.name)
