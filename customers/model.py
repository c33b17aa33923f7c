"""The context engine's shared vocabulary: a customer's signals in, their intent and the kind of
moment out.

One rule: these are plain frozen values; nothing here reads a clock, a file or a database. The
pure cores (`customers/intent.py`, `customers/micromoment.py`) take and return them; the shell
(`customers/store.py`, `app/`) loads and serves them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

MicromomentKind = Literal["know", "go", "do", "buy"]
IntentModelName = Literal["prior", "fitted"]
ValueTier = Literal["low", "medium", "high"]  # a level of the value matrix (customers/value.py)

# The signal kinds the contract names; any other snake_case kind is stored and carries no intent.
SEARCH, PRODUCT_VIEW, STORE_LOCATOR, DIRECTIONS = "search", "product_view", "store_locator", \
    "directions"
CART_ADD, CHECKOUT, PURCHASE = "cart_add", "checkout", "purchase"


class Signal(msgspec.Struct, kw_only=True, frozen=True):
    """One app event of a customer (from any of their devices), its known attributes parsed."""

    at: datetime
    kind: str
    category: str | None = None  # the retailer's own path, e.g. "electronics.smartphone"
    product_id: str | None = None
    store_id: UUID | None = None
    amount: float | None = None  # purchases: what was spent, in the store's currency
    query: str | None = None


class CategoryIntent(msgspec.Struct, frozen=True):
    category: str
    score: float  # 0..1, the decayed intensity squashed to a unit scale
    signals: int  # signals in this category that still count (not decayed away)


class Spike(msgspec.Struct, frozen=True, omit_defaults=True):
    active: bool
    since: datetime | None = None
    ratio: float | None = None  # current intensity / the customer's trailing baseline


class Intent(msgspec.Struct, frozen=True):
    p_buy: float  # P(a purchase within intent_horizon_hours), calibrated
    intent_horizon_hours: int
    by_category: list[CategoryIntent]  # strongest first
    spike: Spike
    model: IntentModelName  # which model answered p_buy


class Micromoment(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: MicromomentKind | None
    evidence: list[str]
    since: datetime | None = None
