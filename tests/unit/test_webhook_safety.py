"""Which URLs and addresses a webhook may call (no DNS: a scripted resolver answers)."""

from __future__ import annotations

import ipaddress

import pytest

from campaigns.webhooks.safety import (
    AllowList,
    Resolver,
    UnsafeUrl,
    checked_addresses,
    forbidden,
    target_of,
)

NONE = AllowList()
LOOPBACK = AllowList.parse("127.0.0.1, hooks.internal:8443")


@pytest.mark.parametrize(("address", "reason"), [
    ("93.184.215.14", None), ("2606:4700::6810:85e5", None),
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.7", "private"),
    ("172.16.3.4", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"),
    ("::ffff:10.0.0.1", "private"), ("100.64.0.1", "not globally routable"),
])
def test_only_public_addresses_may_be_called(address: str, reason: str | None) -> None:
    assert forbidden(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(("url", "allow", "message"), [
    ("http://example.com/h", NONE, "https"),
    ("ftp://example.com/h", NONE, "https"),
    ("https://user:pw@example.com/h", NONE, "credentials"),
    ("https://example.com/h#frag", NONE, "fragment"),
    ("https://example.com:99999/h", NONE, "not a URL"),
    ("https:///h", NONE, "no host"),
    ("https://exa mple.com/h", NONE, "spaces"),
    ("http://hooks.internal:8080/h", LOOPBACK, "https"),  # allowed on 8443 only
])
def test_a_url_that_breaks_a_rule_says_which(url: str, allow: AllowList, message: str) -> None:
    with pytest.raises(UnsafeUrl, match=message):
        target_of(url, allow)


def test_allowed_hosts_may_use_http_on_any_or_their_port() -> None:
    assert target_of("http://127.0.0.1:9000/h", LOOPBACK).allowed
    assert target_of("http://hooks.internal:8443/h", LOOPBACK).allowed
    assert not target_of("https://example.com/h", LOOPBACK).allowed


def resolver(answers: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]
    return resolve


async def test_a_host_is_refused_when_any_of_its_addresses_is_private() -> None:
    answers = {"good.example": ["93.184.215.14"],
               "split.example": ["93.184.215.14", "10.0.0.1"]}
    target = target_of("https://good.example/h", NONE)
    assert await checked_addresses(target, resolver(answers)) == ["93.184.215.14"]
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.1, a private address"):
        await checked_addresses(target_of("https://split.example/h", NONE), resolver(answers))
    with pytest.raises(UnsafeUrl, match="could not be resolved"):
        await checked_addresses(target_of("https://gone.example/h", NONE), resolver(answers))


async def test_an_allowed_host_is_not_resolved_at_all() -> None:
    target = target_of("http://127.0.0.1:9000/h", LOOPBACK)
    assert await checked_addresses(target, resolver({})) == []
