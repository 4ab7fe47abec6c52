"""The feedback tests' shop (tests/support/feedback_shop.py)."""

from tests.support.feedback_shop import hooks, keys

__all__ = ["hooks", "keys"]
