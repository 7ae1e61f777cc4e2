"""Distillers: the momentum teacher of two-way distillation and the FgD centre."""
from .feature_centre import FeatureCentre
from .momentum_teacher import MomentumTeacher

__all__ = ['FeatureCentre', 'MomentumTeacher']
