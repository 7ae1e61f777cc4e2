"""Loops registered in ``r2d2lib.registry.LOOPS``."""
from .retrieval_loop import RetrievalTestLoop, RetrievalValLoop

__all__ = ['RetrievalValLoop', 'RetrievalTestLoop']
