"""Training and evaluation: `TrainConfig` (config.py), `train` (train.py), multi-worker training
(distribute.py), segmentation evaluation (evaluation.py) and restoration evaluation (restoration_eval.py).

Importing this package loads nothing: `kerazoo.training.config` stays cheap for the command line."""
