"""Admins issue keys (the token shown once), revoke them, and set the policy; the API's
refusals are shown in words."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.console.conftest import Service, screenshot, sign_in


def test_an_admin_issues_a_store_managers_key_then_revokes_it(
    page: Any, service: Service,
) -> None:
    store = service.ok("POST", "/v1/stores", json={"name": "Gare", "timezone": "Europe/Paris"})
    sign_in(page, service, service.key("admin", name="Head office"))
    page.get_by_role("link", name="Keys & policy").click()
    page.locator("#key-table tbody tr").first.wait_for()
    page.get_by_label("Key name").fill("Gare manager")
    page.get_by_label("Role").select_option("store_manager")
    page.get_by_role("group", name="Stores (store managers only)").get_by_label("Gare").check()
    page.get_by_role("button", name="Issue the key").click()
    page.locator("#new-token").wait_for()
    token = page.locator("#new-token-value").text_content()
    row = page.locator("#key-table tbody tr").filter(has_text="Gare manager")
    row.wait_for()
    screenshot(page, "admin")
    mine = httpx.get(f"{service.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (mine.status_code, mine.json()["role"], mine.json()["store_ids"]) == (
        200, "store_manager", [store["id"]])
    page.get_by_role("button", name="Revoke Gare manager").click()
    page.locator("#admin-status").get_by_text("revoked").wait_for()
    gone = httpx.get(f"{service.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (gone.status_code, row.count()) == (401, 0)


def test_a_store_managers_key_without_stores_is_refused_in_words(
    page: Any, service: Service,
) -> None:
    sign_in(page, service, service.key("admin"))
    page.get_by_role("link", name="Keys & policy").click()
    page.locator("#key-table tbody tr").first.wait_for()
    page.get_by_label("Key name").fill("nobody's")
    page.get_by_role("button", name="Issue the key").click()
    page.locator("#admin-error").get_by_text("needs at least one store").wait_for()
    page.watch.errors[:] = [e for e in page.watch.errors if "400 (Bad Request)" not in e]
    assert page.locator("#new-token").is_hidden()


def test_the_policy_is_saved_through_the_api(page: Any, service: Service) -> None:
    sign_in(page, service, service.key("admin"))
    page.get_by_role("link", name="Keys & policy").click()
    page.locator("#key-table tbody tr").first.wait_for()
    expect(page.get_by_label("At most pushes per device per day")).to_have_value("3")
    page.get_by_label("At most pushes per device per day").fill("5")
    page.get_by_label("Quiet hours").uncheck()
    page.get_by_role("button", name="Save the policy").click()
    page.locator("#admin-status").get_by_text("Policy saved.").wait_for()
    policy = service.ok("GET", "/v1/policy")
    assert (policy["max_per_device_per_day"], policy["quiet_hours"]) == (5, None)
    page.get_by_label("At most pushes per device per day").fill("-1")
    page.get_by_role("button", name="Save the policy").click()
    page.locator("#admin-error").get_by_text("max_per_device_per_day").wait_for()
    page.watch.errors[:] = [e for e in page.watch.errors if "400 (Bad Request)" not in e]
    assert (page.get_by_label("At most pushes per device per day").get_attribute("aria-invalid"),
            service.ok("GET", "/v1/policy")["max_per_device_per_day"]) == ("true", 5)
