"""What every writer shares: the float32 model, its serving function, the sample inputs, the Keras
reference outputs and the metadata, gathered once in an `ExportJob`."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from kerazoo.export.parity import all_layers, declared_tie_policy
from kerazoo.export.report import ExportError, ExportReport
from kerazoo.export.runners import INPUT_NAME
from kerazoo.utils.timing import median_ms


@dataclasses.dataclass
class ExportOptions:
    """The `export` arguments the writers read (see `kerazoo.export.export` for their meaning)."""

    variants: tuple = ("float32",)
    representative_data: object = None
    argmax_output: bool = False
    uint8_input: bool = False
    io_dtype: str = "float32"
    opset: int = 17
    num_calibration: int = 100
    latency_runs: int = 10
    sample_targets: object = None


@dataclasses.dataclass
class ExportJob:
    """One export: what the writers read, and the report they fill.

    Attributes:
        model: the model exported (a float32 twin of a mixed-precision one).
        stem: file name stem (the original model's name).
        out_dir: directory the files go to.
        options: the `ExportOptions`.
        module: the `ServingModule` holding the variables and serving functions.
        concrete_function: the serving signature (the most dynamic one that traces).
        input_spec: its input `tf.TensorSpec`.
        samples: float32 sample images; `feed` is what the files take (uint8 with `uint8_input`).
        reference: the Keras outputs on `samples` (float64 scores, or int classes).
        metadata: the dict embedded in every file.
        tie_policy: the model's declared tie policy (`kerazoo.export.parity.declared_tie_policy`).
        report: the `ExportReport` being filled.
        state: what one writer learns for its next variant (e.g. TFLite's working signature).
        targets: clean images for the samples (restoration's PSNR contract), or None.
    """

    model: keras.Model
    stem: str
    out_dir: str
    options: ExportOptions
    module: object
    concrete_function: object
    input_spec: tf.TensorSpec
    samples: np.ndarray
    feed: np.ndarray
    reference: np.ndarray
    metadata: dict
    tie_policy: str
    report: ExportReport
    state: dict = dataclasses.field(default_factory=dict)
    targets: np.ndarray | None = None

    @property
    def output_name(self):
        return "classes" if self.options.argmax_output else "scores"


def _replace_policies(config):
    """Returns `config` with every non-float32 float dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = config.get("config", {}).get("name", "float32")
            if name != "float32" and name.startswith(("mixed_", "float16", "bfloat16")):
                return {**config, "config": {**config["config"], "name": "float32"}}
            return config
        return {key: _replace_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_replace_policies(value) for value in config]
    return config


def float32_model(model, mixed_precision):
    """The model to export: `model` itself, or a float32 twin of a reduced-precision model, and notes.

    TFLite builtins and the parity contract assume float32 compute, so a model built under
    "mixed_float16" (or "mixed_bfloat16") is rebuilt from its config with float32 policies and given
    the same weights (its variables are float32 already).
    """
    policies = sorted({layer.dtype_policy.name for layer in all_layers(model)})
    reduced = [p for p in policies if p != "float32"]
    if not reduced:
        return model, []
    if mixed_precision == "error":
        raise ExportError(
            f"Model {model.name!r} computes with dtype policies {reduced}; export needs float32 compute. "
            "Pass mixed_precision='float32' to export a float32 twin with the same weights, or rebuild the "
            "model under keras.mixed_precision.set_global_policy('float32')."
        )
    if mixed_precision != "float32":
        raise ValueError(f"mixed_precision must be 'float32' or 'error'; got {mixed_precision!r}")
    config = _replace_policies(keras.saving.serialize_keras_object(model))
    # A ZooModel's config holds create_model arguments, not layer policies: it rebuilds under the
    # global policy, which the user may still have set to mixed precision.
    global_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = keras.saving.deserialize_keras_object(config)
    finally:
        keras.mixed_precision.set_global_policy(global_policy)
    twin.set_weights([np.asarray(w, dtype="float32") for w in model.get_weights()])
    return twin, [f"model uses dtype policies {reduced}: exported a float32 twin with the same weights; "
                  "parity is measured against that twin"]


class _ModelHolder:
    """Keeps the Keras model out of tf.Module's object tracking (a plain object is not tracked)."""

    def __init__(self, model):
        self.model = model


class ServingModule(tf.Module):
    """Holds the model's variables (saved once) and the serving function.

    The module tracks the TensorFlow variables under the Keras variables, not the Keras model: with
    the model tracked, the TFLite converter keeps every weight as a VAR_HANDLE/READ_VARIABLE resource
    that nothing initialises (NaN outputs), whereas plain tf.Variables are frozen into constants.
    """

    def __init__(self, model, input_spec, argmax_output, output_name):
        super().__init__()
        self.tf_variables = [variable.value for variable in model.variables]
        self._holder = _ModelHolder(model)
        self.input_spec = input_spec
        self._argmax_output, self._output_name = argmax_output, output_name
        self.serve = self.function_for(input_spec)

    def outputs(self, scores):
        """The serving output dict for the model's `scores`."""
        if self._argmax_output:
            # tf.math.argmax, not keras.ops.argmax: the latter lowers to Bitcast/BitwiseAnd on floats.
            return {self._output_name: tf.math.argmax(scores, axis=-1, output_type=tf.int32)}
        return {self._output_name: tf.cast(scores, tf.float32)}

    def function_for(self, input_spec):
        """A serving tf.function with signature `input_spec` (TFLite may need a more static one)."""
        model = self._holder.model

        @tf.function(input_signature=[input_spec])
        def serve(image):
            return self.outputs(model(tf.cast(image, tf.float32), training=False))

        return serve

    def weights_as_inputs_function(self, input_spec):
        """(a serving tf.function taking the image and every variable value as inputs, the specs of those
        variables): converters then see no variables to freeze into constants (see `kerazoo.export.onnx`)."""
        model = self._holder.model
        trainable, non_trainable = model.trainable_variables, model.non_trainable_variables
        specs = [tf.TensorSpec(v.shape, v.dtype, name=f"kerazoo_weight_{i}")
                 for i, v in enumerate(trainable + non_trainable)]

        @tf.function(input_signature=[input_spec, specs])
        def serve(image, weights):
            scores, _ = model.stateless_call(list(weights[: len(trainable)]), list(weights[len(trainable) :]),
                                             tf.cast(image, tf.float32), training=False)
            return self.outputs(scores)

        return serve, specs


def images_from(data, limit):
    """Yields up to `limit` single images (1, H, W, C) as float32 from an array, a tf.data dataset of
    images or (image, mask) pairs, dicts with an "image" key, or any iterable of those."""
    if data is None:
        return
    if isinstance(data, np.ndarray) or tf.is_tensor(data):
        data = [np.asarray(data)]
    count = 0
    for element in data:
        if isinstance(element, dict):
            element = element["image"] if "image" in element else next(iter(element.values()))
        elif isinstance(element, (tuple, list)):
            element = element[0]
        array = np.asarray(element, dtype="float32")
        batch = array[None] if array.ndim == 3 else array
        if batch.ndim != 4:
            raise ValueError(f"images must be (H, W, C) or (B, H, W, C); got shape {array.shape}")
        for image in batch:
            yield image[None]
            count += 1
            if count >= limit:
                return


def sample_inputs_for(model, sample_inputs, representative_data, input_size, rng_seed=0):
    """Float32 sample images (B, H, W, C) parity is measured on."""
    if sample_inputs is not None:
        samples = np.asarray(sample_inputs, dtype="float32")
        return samples[None] if samples.ndim == 3 else samples
    images = list(images_from(representative_data, 2))
    images = [image for image in images if image.shape == images[0].shape] if images else []
    if images:
        return np.concatenate(images)
    _, height, width, channels = model.input_shape
    if input_size is not None:
        height, width = input_size
    rng = np.random.default_rng(rng_seed)
    return rng.uniform(0, 255, size=(2, height or 64, width or 64, channels)).astype("float32")


def _traced_module(model, options, input_size, samples, report):
    """(ServingModule, its concrete function, the input spec): dynamic height and width when the model
    traces with them, else the sample size (noted in `report`)."""
    _, height, width, channels = model.input_shape
    if input_size is not None:
        height, width = input_size
    input_dtype = tf.uint8 if options.uint8_input else tf.float32
    output_name = "classes" if options.argmax_output else "scores"
    spec = tf.TensorSpec((None, height, width, channels), input_dtype, name=INPUT_NAME)
    module = ServingModule(model, spec, options.argmax_output, output_name)
    try:
        return module, module.serve.get_concrete_function(), spec
    except Exception as error:
        if height is not None and width is not None:
            raise ExportError(f"Model {model.name!r} cannot be traced for export: {error}") from error
        # Some layers cannot be traced with unknown height and width (keras UpSampling2D "bilinear"
        # tests a symbolic size in Python); every file then takes the sample inputs' size.
        height, width = samples.shape[1:3]
        spec = tf.TensorSpec((None, height, width, channels), input_dtype, name=INPUT_NAME)
        module = ServingModule(model, spec, options.argmax_output, output_name)
        reason = str(error).strip().splitlines()
        layer = next((line.strip() for line in reason if "Exception encountered when calling" in line), reason[0])
        report.notes.append(f"the model cannot be traced with dynamic height and width ({layer[:200]}); "
                            f"every file takes static {height}x{width} (batch still dynamic)")
        return module, module.serve.get_concrete_function(), spec


def _listed(value):
    return None if value is None else [list(v) if isinstance(v, (tuple, list)) else v for v in value]


def prepare_job(model, exported_model, out_dir, options, report, sample_inputs, input_size, class_names):
    """Traces the serving function, computes the Keras reference on the samples and the metadata."""
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    samples = sample_inputs_for(exported_model, sample_inputs, options.representative_data, input_size)
    if keras.backend.backend() == "tensorflow":
        module, concrete_function, spec = _traced_module(exported_model, options, input_size, samples, report)
    else:  # JAX, torch: ONNX only, through Keras' own exporter at the sample size (kerazoo.export.onnx)
        module = concrete_function = None
        spec = tf.TensorSpec((None, *samples.shape[1:]), tf.float32, name=INPUT_NAME)
    if options.uint8_input:
        samples = np.clip(np.round(samples), 0, 255)
    report.sample_shape = samples.shape
    reference = keras.ops.convert_to_numpy(exported_model(samples, training=False)).astype("float64")
    if exported_model is not model:
        original = keras.ops.convert_to_numpy(model(samples, training=False)).astype("float64")
        agreement = float(np.mean(np.argmax(original, -1) == np.argmax(reference, -1)))
        report.notes.append(f"argmax agreement of the float32 twin with the {model.dtype_policy.name} model: "
                            f"{agreement:.4f}")
    keras_call = lambda x: exported_model(x, training=False)  # noqa: E731
    single = samples[:1]
    if keras.backend.backend() == "tensorflow":
        keras_call, single = tf.function(keras_call), tf.constant(single)
    report.keras_latency_ms = median_ms(lambda: keras_call(single), options.latency_runs)
    job = ExportJob(
        model=exported_model, stem=model.name, out_dir=out_dir, options=options, module=module,
        concrete_function=concrete_function, input_spec=spec, samples=samples,
        feed=samples.astype("uint8") if options.uint8_input else samples,
        reference=np.argmax(reference, axis=-1) if options.argmax_output else reference,
        metadata={}, tie_policy=declared_tie_policy(model), report=report,
        targets=None if options.sample_targets is None else np.asarray(options.sample_targets, dtype="float64"),
    )
    job.metadata = {
        "model": model.name,
        "class_names": list(class_names) if class_names is not None else None,
        # A ZooModel knows its classes and the size it was trained at: an app resizes frames to it.
        "class_colors": _listed(getattr(model, "class_colors", None)),
        "trained_input_size": _listed(getattr(model, "input_size", None)),
        "input": {"name": INPUT_NAME, "dtype": "uint8" if options.uint8_input else "float32",
                  "layout": "NHWC", "pixels": "raw 0..255 (preprocessing is inside the model)",
                  "shape": list(spec.shape)},
        "output": {"name": job.output_name, "dtype": "int32" if options.argmax_output else "float32",
                   "meaning": "class index per pixel" if options.argmax_output else "per-pixel class scores"},
        "kerazoo_version": _kerazoo_version(),
    }
    return job


def _kerazoo_version():
    try:
        from importlib.metadata import version

        return version("kerazoo")
    except Exception:  # not installed (running from a checkout)
        return None
