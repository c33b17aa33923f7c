"""Signing in with an API key: the role and scope shown, the key kept for the tab only and
never in a URL, sign-out forgetting it; each key sees only what its role may."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Service, screenshot, sign_in


def stores(service: Service, *names: str) -> list[dict[str, Any]]:
    return [service.ok("POST", "/v1/stores", json={"name": n, "timezone": "Europe/Paris"})
            for n in names]


def test_a_store_manager_sees_its_stores_only_and_signs_out(page: Any, service: Service) -> None:
    mine, _other = stores(service, "Rue Cler", "Bastille")
    token = service.key("store_manager", [mine["id"]], name="Cler manager")
    sign_in(page, service, token)
    page.locator("#store-select option").first.wait_for(state="attached")
    options = page.locator("#store-select option").all_text_contents()
    assert (page.locator("#who-role").text_content(), page.locator("#who-name").text_content(),
            page.locator("#who-scope").text_content(), options,
            page.get_by_role("link", name="Campaigns").is_visible()) == (
        "store manager", "Cler manager", "stores: Rue Cler", ["Rue Cler"], False)
    stored = page.evaluate("() => [sessionStorage.getItem('contexto.apiKey'), localStorage.length,"
                           " document.cookie]")
    assert stored == [token, 0, ""]
    assert not [u for u in page.watch.requests if token in u]
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for(state="visible")
    assert page.evaluate("() => sessionStorage.length") == 0


def test_an_admin_sees_every_store(page: Any, service: Service) -> None:
    stores(service, "Opéra")
    token = service.key("admin", name="Head office")
    sign_in(page, service, token)
    page.locator("#store-select option").first.wait_for(state="attached")
    names = set(page.locator("#store-select option").all_text_contents())
    every = {s["name"] for s in service.ok("GET", "/v1/stores")["items"]}
    assert (page.locator("#who-role").text_content(), page.locator("#who-scope").text_content(),
            names) == ("admin", "everything", every)
    assert {"Rue Cler", "Bastille", "Opéra"} <= names


def test_an_unknown_key_is_refused_in_words(page: Any, service: Service) -> None:
    page.goto(f"{service.url}/console")
    screenshot(page, "sign-in")
    page.get_by_label("API key").fill("ctxk_not-a-key")
    # The service answers 401: the browser logs the failed request, which is expected here.
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#sign-in-error")
    alert.get_by_text("unknown or has been revoked").wait_for()
    page.watch.errors[:] = [e for e in page.watch.errors if "401" not in e]
    assert page.evaluate("() => sessionStorage.length") == 0


def test_the_key_survives_a_reload_in_the_same_tab(page: Any, service: Service) -> None:
    (store,) = stores(service, "Marais")
    sign_in(page, service, service.key("store_manager", [store["id"]]))
    page.reload()
    page.locator("#who").wait_for(state="visible")
    assert page.locator("#who-scope").text_content() == "stores: Marais"
