"""Campaigns and the global push policy, for campaign staff."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.params import Parameter
from msgspec import UNSET, Meta, UnsetType

from app import audit
from app import backtest as replay
from app.audit import Change
from app.auth import Principal, admits
from app.errors import invalid_field_of
from app.pagination import Cursor, Limit, Page, after_of, page_of
from campaigns import reports, store
from campaigns.backtest import Backtest, BacktestIn
from campaigns.model import (
    Audience,
    Campaign,
    CampaignSpec,
    Caps,
    ConversionValue,
    HoldoutPercent,
    Offer,
    OfferTtl,
    Policy,
    Schedule,
    Trigger,
)

STAFF = ("campaign_manager",)


class CampaignPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Fields to change; each given field replaces the stored one whole."""

    name: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    trigger: Trigger | UnsetType = UNSET
    schedule: Schedule | UnsetType = UNSET
    offer: Offer | UnsetType = UNSET
    offer_ttl_seconds: OfferTtl | UnsetType = UNSET
    priority: Annotated[int, Meta(ge=-1000, le=1000)] | UnsetType = UNSET
    caps: Caps | UnsetType = UNSET
    holdout_percent: HoldoutPercent | UnsetType = UNSET
    audience: Audience | UnsetType | None = UNSET  # null removes the audience
    value: ConversionValue | UnsetType = UNSET


class CampaignController(Controller):
    path = "/v1/campaigns"
    tags = ["campaigns"]

    @post(operation_id="createCampaign", opt=admits(*STAFF, action="create campaigns"))
    async def create(self, data: CampaignSpec, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> Campaign:
        """Schedule a micromoment offer: what triggers it, when, what it says, how long it
        lasts, and how often one device may get it."""
        async with pool.acquire() as conn, conn.transaction():
            campaign = await store.insert_campaign(conn, data, now)
            await audit.record(conn, principal, now, Change("create", "campaign", campaign.id,
                                                            after=campaign))
        return campaign

    @get(operation_id="listCampaigns", opt=admits(*STAFF, action="list campaigns"))
    async def list_campaigns(
        self, pool: asyncpg.Pool, limit: Limit = 100, cursor: Cursor = None,
        status: Annotated[Literal["draft", "active", "paused"] | None,
                          Parameter(description="only campaigns in this status")] = None,
    ) -> Page[Campaign]:
        """Campaigns, oldest first."""
        async with pool.acquire() as conn:
            items = await store.list_campaigns(conn, status, after_of(cursor), limit + 1)
        return page_of(items, limit)

    @post("/backtest", operation_id="backtestCampaign", status_code=200,
          opt=admits(*STAFF, action="backtest campaigns"))
    async def backtest(self, data: BacktestIn, pool: asyncpg.Pool, state: State,
                       now: datetime) -> Backtest:
        """What a proposed campaign (a body as for creating one) would have done over a past
        period of at most 7 days: the stored pings and signals replayed through presence and
        the decision rules, against the current policy and the other active campaigns. It
        sends nothing and changes nothing."""
        async with pool.acquire() as conn:
            return await replay.backtest(
                conn, state.catalog, state.predictor, state.intent_model, state.value_model,
                data, now, context=not state.settings.bench_skip_context)

    @get("/{campaign_id:uuid}", operation_id="getCampaign",
         opt=admits(*STAFF, action="read campaigns"))
    async def get_campaign(self, campaign_id: UUID, pool: asyncpg.Pool) -> Campaign:
        """One campaign."""
        async with pool.acquire() as conn:
            return await store.get_campaign(conn, campaign_id)

    @patch("/{campaign_id:uuid}", operation_id="updateCampaign",
           opt=admits(*STAFF, action="change campaigns"))
    async def update(self, campaign_id: UUID, data: CampaignPatch, pool: asyncpg.Pool,
                     principal: Principal, now: datetime) -> Campaign:
        """Change a campaign; the result is validated as a whole, like a new campaign."""
        async with pool.acquire() as conn, conn.transaction():
            current = await store.get_campaign(conn, campaign_id, lock=True)
            merged = store.spec_of(current)
            merged.update(msgspec.to_builtins(data))
            try:
                spec = msgspec.convert(merged, CampaignSpec)
            except msgspec.ValidationError as exc:
                raise invalid_field_of(exc) from exc
            updated = await store.update_campaign(conn, campaign_id, spec, now)
            await audit.record(conn, principal, now, Change("update", "campaign", campaign_id,
                                                            before=current, after=updated))
        return updated

    @delete("/{campaign_id:uuid}", operation_id="deleteCampaign",
            opt=admits(*STAFF, action="delete campaigns"))
    async def remove(self, campaign_id: UUID, pool: asyncpg.Pool, principal: Principal,
                     now: datetime) -> None:
        """Delete a campaign and its delivery records."""
        async with pool.acquire() as conn, conn.transaction():
            current = await store.get_campaign(conn, campaign_id, lock=True)
            await store.delete_campaign(conn, campaign_id)
            await audit.record(conn, principal, now, Change("delete", "campaign", campaign_id,
                                                            before=current))

    @post("/{campaign_id:uuid}/activate", operation_id="activateCampaign", status_code=200,
          opt=admits(*STAFF, action="activate campaigns"))
    async def activate(self, campaign_id: UUID, pool: asyncpg.Pool, principal: Principal,
                       now: datetime) -> Campaign:
        """Make the campaign live from the next ping on (409 when its schedule has ended)."""
        async with pool.acquire() as conn, conn.transaction():
            current = await store.get_campaign(conn, campaign_id, lock=True)
            updated = await store.set_status(conn, campaign_id, "active", now)
            await audit.record(conn, principal, now, Change("activate", "campaign", campaign_id,
                                                            before=current, after=updated))
        return updated

    @post("/{campaign_id:uuid}/pause", operation_id="pauseCampaign", status_code=200,
          opt=admits(*STAFF, action="pause campaigns"))
    async def pause(self, campaign_id: UUID, pool: asyncpg.Pool, principal: Principal,
                    now: datetime) -> Campaign:
        """Stop the campaign triggering; offers already queued still go out until they expire."""
        async with pool.acquire() as conn, conn.transaction():
            current = await store.get_campaign(conn, campaign_id, lock=True)
            updated = await store.set_status(conn, campaign_id, "paused", now)
            await audit.record(conn, principal, now, Change("pause", "campaign", campaign_id,
                                                            before=current, after=updated))
        return updated


    @get("/{campaign_id:uuid}/deliveries", operation_id="listCampaignDeliveries",
         opt=admits(*STAFF, action="read campaign reports"))
    async def deliveries(
        self, campaign_id: UUID, pool: asyncpg.Pool, limit: Limit = 100, cursor: Cursor = None,
        status: Annotated[Literal["queued", "sending", "sent", "failed", "expired"] | None,
                          Parameter(description="only deliveries in this status")] = None,
    ) -> Page[reports.Delivery]:
        """The campaign's deliveries, oldest first, with their FCM outcome and feedback."""
        async with pool.acquire() as conn:
            await store.get_campaign(conn, campaign_id)
            items = await reports.list_deliveries(conn, campaign_id, status,
                                                  after_of(cursor), limit + 1)
        return page_of(items, limit)

    @get("/{campaign_id:uuid}/stats", operation_id="getCampaignStats",
         opt=admits(*STAFF, action="read campaign reports"))
    async def stats(self, campaign_id: UUID, pool: asyncpg.Pool) -> reports.Stats:
        """What the campaign achieved: every moment it matched, counted once, as a delivery
        (queued, sent, failed, expired; opened, redeemed) or a suppression with its reason;
        and `latency_ms`, the p50/p95/p99 from a ping batch's receipt to FCM accepting the push
        it triggered (retries included), null while nothing was sent."""
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            await store.get_campaign(conn, campaign_id)
            return await reports.stats(conn, campaign_id)


class PolicyController(Controller):
    path = "/v1/policy"
    tags = ["policy"]

    @get(operation_id="getPolicy", opt=admits(*STAFF, action="read the policy"))
    async def get_policy(self, pool: asyncpg.Pool) -> Policy:
        """The global pressure limits, applied in each device's local time."""
        async with pool.acquire() as conn:
            return await store.get_policy(conn)

    @put(operation_id="putPolicy", opt=admits("admin", action="change the policy"))
    async def put_policy(self, data: Policy, pool: asyncpg.Pool, principal: Principal,
                         now: datetime) -> Policy:
        """Replace the global pressure limits; `quiet_hours: null` turns quiet hours off."""
        async with pool.acquire() as conn, conn.transaction():
            before = await store.get_policy(conn, lock=True)
            after = await store.put_policy(conn, data, now)
            await audit.record(conn, principal, now, Change("update", "policy", None,
                                                            before=before, after=after))
        return after
