"""The customer's context as the shell reads it: once per ping batch for the moments the batch
made, and on request for the context endpoints.

One rule: one read of the customer's signals per batch that made a moment some active campaign
answers (never per ping, never per moment, none for a batch without such moments), through the
batch's ledger (a query on the live path); the pure cores
(`customers.intent`, `customers.micromoment`, `customers.context`) do the rest on what it read.
A moment no campaign's trigger matches ends in no delivery and no suppression, so it needs no
context (in `make bench`, every exit: its campaigns all trigger on entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from app.catalog import CatalogView
from app.intent import IntentModel
from app.ledger import Ledger
from app.prediction import Predictor, recent_visits
from app.value import ValueModel
from campaigns.decide import Moment, matches
from customers import store as customer_store
from customers.context import MomentEvidence, moment_context
from customers.intent import intent as intent_of
from customers.micromoment import NextPlace, Place, classify, motion_toward
from customers.model import Intent, Micromoment, Signal
from customers.store import customer_key
from customers.value import Value
from geo.presence import Fix
from geo.store import Connection


class NextPlaceOut(msgspec.Struct, frozen=True):
    store_id: UUID
    probability: float


class CustomerContext(msgspec.Struct, frozen=True, omit_defaults=True):
    """What contexto knows about a person at this moment (the contract's "Customer context")."""

    customer_id: str
    as_of: datetime
    intent: Intent
    micromoment: Micromoment
    value: Value
    next_place: NextPlaceOut | None = None


def _classified(moment: Moment, signals: Sequence[Signal], catalog: CatalogView,
                fixes: Sequence[Fix]) -> Micromoment:
    place = Place(store_id=moment.store_id, moment=moment.kind,
                  stay_seconds=moment.stay_seconds)
    if moment.kind == "predicted_next":
        next_place = NextPlace(store_id=moment.store_id, probability=moment.probability or 0.0,
                               at=moment.occurred_at)
        return classify(signals, moment.occurred_at, place=place, next_place=next_place)
    fence = catalog.index.fences[moment.fence_id] if moment.fence_id is not None else None
    motion = (motion_toward(fixes, fence.shape.center_lat, fence.shape.center_lng,
                            until=moment.occurred_at) if fence is not None else None)
    return classify(signals, moment.occurred_at, place=place, motion=motion)


async def with_context(ledger: Ledger, catalog: CatalogView, intent_model: IntentModel,
                       value_model: ValueModel | None, customer_id: str | None,
                       device_id: UUID,
                       moments: Sequence[Moment], fixes: Sequence[Fix],
                       now: datetime) -> list[tuple[Moment, MomentEvidence | None]]:
    """The moments, each with the customer's context at its instant and what a delivery keeps
    of it (one signals read); a moment no active campaign matches goes on without either."""
    answered = [any(c.status == "active" and matches(c.trigger, m) for c in catalog.campaigns)
                for m in moments]
    if not any(answered):
        return [(m, None) for m in moments]
    signals = await ledger.signals(customer_id, None if customer_id else device_id, now)
    intent = intent_of(signals, now, intent_model.model)
    # The value matrix in hand answers from memory: no query, no fit, per batch.
    tier = (value_model.of(customer_key(customer_id, device_id)).tier
            if value_model is not None else None)
    out: list[tuple[Moment, MomentEvidence | None]] = []
    for moment, wanted in zip(moments, answered, strict=True):
        if not wanted:
            out.append((moment, None))
            continue
        micromoment = _classified(moment, signals, catalog, fixes)
        out.append((
            msgspec.structs.replace(moment, context=moment_context(intent, micromoment, tier)),
            MomentEvidence(micromoment=micromoment.kind, evidence=micromoment.evidence,
                           p_buy=round(intent.p_buy, 4), intent_model=intent.model),
        ))
    return out


async def customer_context(conn: Connection, key: str, intent_model: IntentModel,
                           value_model: ValueModel, predictor: Predictor,
                           now: datetime) -> CustomerContext | None:
    """The context of the customer a key names (a customer id, or `device:<uuid>` for a
    device without one), or None when neither a device nor an imported transaction names it."""
    signals = await customer_store.signals_of_key(conn, key, now)
    if signals is None:
        return None
    history = await recent_visits(conn, key)
    next_place = None
    for place, probability in predictor.predict(key, history, now, k=1):
        store = _uuid_or_none(place)
        if store is not None:
            next_place = NextPlaceOut(store, round(probability, 4))
    return CustomerContext(
        customer_id=key, as_of=now, intent=intent_of(signals, now, intent_model.model),
        micromoment=classify(signals, now), value=value_model.of(key), next_place=next_place,
    )


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None
