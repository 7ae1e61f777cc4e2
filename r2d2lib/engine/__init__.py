"""Engine: training hooks and the retrieval evaluation loops."""
from . import hooks, runners  # noqa: F401
