"""The HTTP tests' fixtures: a shop served by the app (tests/support/http.py)."""

from tests.support.http import live, shop

__all__ = ["live", "shop"]
