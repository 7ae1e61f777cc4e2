"""Distillers: the momentum teacher of two-way distillation, the FgD centre, feature-guided distillation."""
from .feature_centre import FeatureCentre
from .feature_distiller import FeatureGuidedDistiller
from .momentum_teacher import MomentumTeacher

__all__ = ['FeatureCentre', 'FeatureGuidedDistiller', 'MomentumTeacher']
