"""Adam and AdamW whose per-variable update is one fused kernel on the TensorFlow backend.

Keras' Adam builds about twenty ops per variable (casts, powers, moments, the update) each time a training
step is traced: for U-Net ResNet50 (244 variables) that was about 45% of the first training step
(benchmarks/BENCHMARK.md, "First training step"). These classes compute the same update with TensorFlow's
`ResourceApplyAdam` kernel, whose formula is Keras' own (`m += (g - m)(1 - b1)`, `v += (g^2 - v)(1 - b2)`,
`var -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + epsilon)`), so one op per variable is traced.

Anywhere the kernel does not apply, Keras' `update_step` runs (the reference, tested against the kernel):
other backends, `amsgrad`, sparse gradients, and inside a `tf.distribute` strategy scope (its replicas
update their own copies through Keras' code). Configs, slot variables and checkpoints are Keras', so an
optimizer saved by one class loads into the other.
"""

import keras
from keras import ops

__all__ = ["Adam", "AdamW", "fast_optimizer"]

PACKAGE = "kerazoo"


class _FusedAdamUpdate:
    """`update_step` through `ResourceApplyAdam`; mixed into Keras' Adam and AdamW."""

    def _fused_applies(self, gradient, variable):
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return False
        import tensorflow as tf  # only on the TensorFlow backend

        return not tf.distribute.has_strategy() and not isinstance(gradient, tf.IndexedSlices)

    def apply(self, grads, trainable_variables=None):
        # The step's scalars (b1^t, b2^t, b1, b2, epsilon) are built once per apply, not once per variable.
        self._step_scalars = {}
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_scalars = None

    def _scalars(self, dtype):
        cache = getattr(self, "_step_scalars", None)
        if cache is not None and dtype in cache:
            return cache[dtype]
        local_step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        scalars = dict(beta1_power=ops.power(beta_1, local_step), beta2_power=ops.power(beta_2, local_step),
                       beta1=beta_1, beta2=beta_2, epsilon=ops.cast(self.epsilon, dtype))
        if cache is not None:
            cache[dtype] = scalars
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        if not self._fused_applies(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        index = self._get_variable_index(variable)  # Keras' slot lookup, as its own update_step does
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            lr=ops.cast(learning_rate, dtype), grad=ops.cast(gradient, dtype), **self._scalars(dtype))


def _handle(variable):
    """The resource handle of a Keras variable or of the `tf.Variable` Keras hands to `update_step`."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


@keras.saving.register_keras_serializable(package=PACKAGE)
class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` (same arguments and results) with a fused update on TensorFlow."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` (same arguments and results) with a fused update on TensorFlow; the
    decoupled weight decay is applied by Keras before the update, as in AdamW."""


def fast_optimizer(optimizer):
    """The optimizer `compile` should use: "adam" / "adamw" (Keras' default-argument strings) become this
    module's classes; anything else (instances, other names) is returned as given."""
    if isinstance(optimizer, str) and optimizer.lower() in ("adam", "adamw"):
        return {"adam": Adam, "adamw": AdamW}[optimizer.lower()]()
    return optimizer
