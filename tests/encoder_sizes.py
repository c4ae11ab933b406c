"""Encoders too large for the slow suite: over 45M parameters without their classifier (Keras Applications'
sizes), each minutes and gigabytes to build and train on 2 cores. Their cases are marked `matrix` (run on
demand: `pytest -m matrix`); benchmarks/combinations.py builds and runs every model on them."""

LARGE_ENCODERS = frozenset({
    "convnext_small", "convnext_base", "convnext_large", "convnext_xlarge", "efficientnetb7", "efficientnetv2m",
    "efficientnetv2l", "nasnetlarge", "inceptionresnetv2", "resnet152v2",
})
