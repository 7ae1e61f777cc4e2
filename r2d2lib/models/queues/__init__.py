"""Feature queues: weighted ring buffers of teacher features."""
from .feature_queue import FeatureQueue

__all__ = ['FeatureQueue']
