"""Training objectives: everything a model needs only to train (losses, teacher, queues, weights).

A model's ``objective`` (``model=dict(..., objective=dict(type='R2D2Objective', ...))``) is built only
for training; an exported model has none. ``model.forward(mode='loss')`` calls ``objective(model, inputs)``.
"""
from .contrastive import ContrastiveObjective, TrainFeatures
from .diffusion import DiffusionObjective, NoisePredictionLoss
from .matching import MatchingObjective
from .r2d2 import R2D2Objective

__all__ = ['ContrastiveObjective', 'DiffusionObjective', 'MatchingObjective', 'NoisePredictionLoss',
           'R2D2Objective', 'TrainFeatures']
