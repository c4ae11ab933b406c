"""Encoders too large for the slow suite: over 25M parameters without their classifier (Keras Applications'
sizes), each a minute or more and gigabytes to build and train on 2 cores (CI's slow step has 40 minutes). Their cases are marked `matrix` (run on
demand: `pytest -m matrix`); benchmarks/combinations.py builds and runs every model on them."""

LARGE_ENCODERS = frozenset({
    "convnext_small", "convnext_base", "convnext_large", "convnext_xlarge", "efficientnetb7", "efficientnetv2m",
    "efficientnetv2l", "nasnetlarge", "inceptionresnetv2", "resnet152v2", "resnet101v2", "resnet101", "resnet152",
    "efficientnetb5", "efficientnetb6",
})
# Each encoder family's smallest member: what the default run of test_encoder_zoo checks, and the encoders U-Net
# trains on in the slow suite.
SMALLEST_OF_EACH_FAMILY = ("vgg16", "resnet50", "resnet50v2", "mobilenet", "mobilenetv2", "mobilenetv3small",
                           "efficientnetb0", "efficientnetv2b0", "convnext_tiny", "densenet121", "xception",
                           "inceptionv3", "nasnetmobile")
