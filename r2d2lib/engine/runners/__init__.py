"""Loops registered in ``r2d2lib.registry.LOOPS``: retrieval, matching, zero-shot classification."""
from .matching_loop import MatchingTestLoop, MatchingValLoop
from .retrieval_loop import RetrievalTestLoop, RetrievalValLoop
from .zero_shot_loop import ZeroShotTestLoop, ZeroShotValLoop

__all__ = ['MatchingTestLoop', 'MatchingValLoop', 'RetrievalTestLoop', 'RetrievalValLoop',
           'ZeroShotTestLoop', 'ZeroShotValLoop']
