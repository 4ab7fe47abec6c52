"""The reporting tests' fixtures: a small shop with hand-computed figures, a shop whose email
provider reports back (tests/support/feedback_shop.py), and a world with a split."""

from tests.support.ab_shop import ab_shop
from tests.support.feedback_shop import hooks, keys
from tests.support.report_shop import shop

__all__ = ["ab_shop", "hooks", "keys", "shop"]
