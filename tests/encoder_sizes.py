"""Which encoders the default and slow suites cover. On 2 cores every encoder's own checks took over 20 minutes
and U-Net on every encoder longer still, so both suites take each family's smallest member; the rest is marked
`matrix` (run on demand: `pytest -m matrix`), and benchmarks/combinations.py builds every model on every encoder."""

# Each encoder family's smallest member: what test_encoder_zoo checks by default, and the encoders U-Net trains
# on in the slow suite.
SMALLEST_OF_EACH_FAMILY = ("vgg16", "resnet50", "resnet50v2", "mobilenet", "mobilenetv2", "mobilenetv3small",
                           "efficientnetb0", "efficientnetv2b0", "convnext_tiny", "densenet121", "xception",
                           "inceptionv3", "nasnetmobile")
