"""Amounts of money as a reader expects them: `€89.00`, `$1,250.00`, `¥900`, `SEK 89.00`.

The currency is the rule set's (`currency:` in `rules/settings.yaml`, an ISO 4217 code); templates
write `{{ price | money }}` (or `| money(event.properties.currency)` for an order's own currency),
and the report prints its figures with it. Without a currency an amount is a plain number.
"""

from __future__ import annotations

import math
from typing import Any

#: currencies written with a symbol before the amount; any other code is written before it
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "CNY": "¥", "KRW": "₩"}
#: currencies without minor units (ISO 4217 exponent 0)
NO_CENTS = {"JPY", "KRW", "ISK", "CLP", "VND"}


def to_amount(value: Any) -> float | None:
    """A number from a template value (numbers, numeric strings); None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None
    return amount if math.isfinite(amount) else None


def format_money(value: Any, currency: str | None = None) -> str:
    """`value` with the currency's symbol or code and its usual decimals, thousands separated."""
    amount = to_amount(value)
    if amount is None:
        return str(value)
    code = (currency or "").strip().upper() or None
    digits = 0 if code in NO_CENTS else 2
    number = f"{abs(amount):,.{digits}f}"
    sign = "-" if amount < 0 and float(number.replace(",", "")) != 0 else ""
    if code is None:
        return f"{sign}{number}"
    symbol = SYMBOLS.get(code)
    if symbol is not None:
        return f"{sign}{symbol}{number}"
    return f"{sign}{code}\u00a0{number}"
