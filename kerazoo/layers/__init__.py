"""Custom layers of kerazoo, one module a kind: pooling (argmax pool/unpool), upsampling, normalization
(fused batch norm), convolution (dilated convolution on TensorFlow's dilated kernel), shape (pad/crop),
preprocessing, activations (an export-clean GELU) and pyramid (pooling and resizing at run-time sizes).

Every layer runs on `keras.ops` (normalization and convolution add a TensorFlow fast path, tested against
that reference), is registered for `.keras` serialization, and lowers to TFLite
builtin ops and to a valid ONNX graph. Argmax pooling is written with reshapes, slices, comparisons
and 0/1 masks (no `tf.nn.max_pool_with_argmax`, no float argmax, no one-hot products), because those
are what the mobile runtimes and the int8 converter handle correctly.
"""

from kerazoo.layers.activations import GELU
from kerazoo.layers.convolution import DilatedConv2D
from kerazoo.layers.normalization import BatchNormalization, fuse_batch_norm
from kerazoo.layers.pooling import MaxPoolingWithArgmax2D, MaxUnpooling2D
from kerazoo.layers.preprocessing import EncoderPreprocessing
from kerazoo.layers.pyramid import BilinearResizeToReference, BinAveragePooling2D
from kerazoo.layers.resize import AnySizeUpSampling2D
from kerazoo.layers.shape import CropToReference, PadToMultiple
from kerazoo.layers.upsampling import (BedOfNailsUpSampling2D, BilinearConv2DTranspose, BilinearInitializer,
                                      BilinearUpsampling, DepthToSpace, bilinear_kernel)

__all__ = [
    "AnySizeUpSampling2D",
    "BatchNormalization",
    "BedOfNailsUpSampling2D",
    "BilinearConv2DTranspose",
    "BilinearInitializer",
    "BilinearResizeToReference",
    "BilinearUpsampling",
    "BinAveragePooling2D",
    "CropToReference",
    "DepthToSpace",
    "DilatedConv2D",
    "EncoderPreprocessing",
    "GELU",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "PadToMultiple",
    "bilinear_kernel",
    "fuse_batch_norm",
]
