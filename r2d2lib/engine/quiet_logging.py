"""Quiet logs: mmengine's set-up chatter at DEBUG, so a run's console shows progress and what needs action.

At the default ``log_level='INFO'`` a run logs one line about where the environment and the config
went; ``log_level='DEBUG'`` (``tools/train.py --verbose``, ``tools/demo.py --verbose``) brings back
everything mmengine prints while it sets up: the environment and config dump, the hook order, the
optimizer's per-parameter options.
"""
import logging
from contextlib import contextmanager

# Logged by mmengine's own CheckpointHook and LoggerHook, which call FileClient.infer_client
# unconditionally (mmengine 0.10): the user cannot act on them, and no r2d2lib code uses FileClient.
MMENGINE_INTERNAL_DEPRECATIONS = ('"FileClient" will be deprecated in future',
                                  '"HardDiskBackend" is the alias of "LocalBackend"')


def _demote(record: logging.LogRecord) -> None:
    record.levelno, record.levelname = logging.DEBUG, 'DEBUG'


def _demote_mmengine_deprecations(record: logging.LogRecord) -> bool:
    """Logger filter: mmengine's internal FileClient deprecation warnings go at DEBUG."""
    if record.levelno == logging.WARNING and str(record.msg).startswith(MMENGINE_INTERNAL_DEPRECATIONS):
        _demote(record)
    return True


def quiet_mmengine_deprecations(logger: logging.Logger) -> None:
    """Log mmengine's FileClient deprecation warnings at DEBUG on ``logger`` (idempotent)."""
    if _demote_mmengine_deprecations not in logger.filters:
        logger.addFilter(_demote_mmengine_deprecations)


@contextmanager
def infos_at_debug(logger: logging.Logger):
    """Inside the block, ``logger``'s INFO records go at DEBUG; warnings and errors are untouched.

    Handlers check a record's level after the logger's filters, so a demoted record reaches only
    handlers at DEBUG (``log_level='DEBUG'``).
    """
    def demote_info(record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            _demote(record)
        return True

    logger.addFilter(demote_info)
    try:
        yield
    finally:
        logger.removeFilter(demote_info)
