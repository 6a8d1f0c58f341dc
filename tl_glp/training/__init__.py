"""Training a GenerativePrior: the loop, its schedule, checkpoints, metrics and DDP helpers."""

from tl_glp.training.config import TrainConfig
from tl_glp.training.metrics import classifier_two_sample_auc, frechet_distance
from tl_glp.training.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "classifier_two_sample_auc", "frechet_distance", "train"]
