"""Distillers: the momentum teacher of two-way distillation."""
from .momentum_teacher import MomentumTeacher

__all__ = ['MomentumTeacher']
