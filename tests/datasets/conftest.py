"""Fixtures of the dataset tests: the r2d2lib scope and captured log messages."""
import pytest
from mmengine.registry import init_default_scope

from .helpers import attach_log_capture, detach_log_capture


@pytest.fixture(autouse=True)
def r2d2lib_scope():
    init_default_scope('r2d2lib')


@pytest.fixture
def logs():
    handler = attach_log_capture()
    yield handler.messages
    detach_log_capture(handler)
