"""Devices, as the mobile app sees them: registration, settings, export and erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State

from app.auth import DEVICE_PREFIX, Principal, admits, new_token, token_hash
from app.context import CustomerContext, customer_context
from campaigns import devices
from campaigns.devices import Device, DeviceIn, DevicePatch, Registered
from customers.store import customer_key


class DeviceController(Controller):
    path = "/v1/devices"
    tags = ["devices"]

    @post(operation_id="registerDevice", opt=admits("app", action="register devices"))
    async def register(self, data: DeviceIn, pool: asyncpg.Pool, now: datetime) -> Registered:
        """Register an app install: its push address (`fcm_token` or `fid`) and consent.
        The `device_token` returned authenticates this device only; keep it on the device."""
        token = new_token(DEVICE_PREFIX)
        async with pool.acquire() as conn:
            device_id = await devices.register(conn, data, token_hash(token), now)
        return Registered(device_id, token)

    @patch("/me", operation_id="updateDevice", opt=admits("device", action="change a device"))
    async def update(self, data: DevicePatch, pool: asyncpg.Pool,
                     principal: Principal, now: datetime) -> Device:
        """Change this device's push address, consent, time zone, locale or customer id."""
        async with pool.acquire() as conn, conn.transaction():
            return await devices.patch_device(conn, principal.device, data, now)

    @get("/me/export", operation_id="exportDevice",
         opt=admits("device", action="export a device's data"))
    async def export(self, pool: asyncpg.Pool, principal: Principal) -> dict[str, Any]:
        """Every piece of data held about this device."""
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            return await devices.export(conn, principal.device)

    @get("/me/context", operation_id="getDeviceContext",
         opt=admits("device", action="read its own context"))
    async def context(self, pool: asyncpg.Pool, principal: Principal, state: State,
                      now: datetime) -> CustomerContext:
        """What contexto knows about the person using this device right now (their customer's
        context, across all their devices): the same view staff have, so the person an offer
        addresses can see why."""
        async with pool.acquire() as conn:
            device = await devices.get_device(conn, principal.device)
            found = await customer_context(
                conn, customer_key(device.customer_id, device.id), state.intent_model,
                state.value_model, state.predictor, now)
        assert found is not None  # the device exists, so its customer does
        return found

    @delete("/me", operation_id="eraseDevice", opt=admits("device", action="erase a device"))
    async def erase(self, pool: asyncpg.Pool, principal: Principal) -> None:
        """Erase this device: the device, its pings, signals, presence and personal data of its
        deliveries. Its token stops working at once."""
        async with pool.acquire() as conn, conn.transaction():
            await devices.erase(conn, principal.device)
