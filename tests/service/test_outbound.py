"""Which addresses the service may send a team's requests to (webhooks): exact rules."""

from __future__ import annotations

import ipaddress

import pytest

from service.outbound import literal_address, parse_networks, refusal


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),  # mapped, NAT64 and 6to4 forms of a public address
        ("64:ff9b::808:808", None),
        ("2002:808:808::", None),
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4 written as IPv6 is judged as IPv4
        ("64:ff9b::7f00:1", "a loopback address"),
        ("2002:7f00:1::", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("100.64.0.1", "not a public address"),  # shared (carrier-grade NAT) space
        ("192.0.2.1", "a private address"),  # documentation: never a receiver
    ],
)
def test_only_public_addresses_pass_by_default(address: str, why: str | None) -> None:
    assert refusal(ipaddress.ip_address(address), ()) == why


def test_allowed_networks_let_their_addresses_through_and_no_others() -> None:
    allowed = parse_networks("10.20.0.0/16, 127.0.0.1")
    assert refusal(ipaddress.ip_address("10.20.3.4"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.21.0.1"), allowed) == "a private address"
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "a loopback address"


def test_networks_parse_loosely_and_a_bad_one_is_named() -> None:
    assert parse_networks("") == parse_networks(" , ") == ()
    assert [str(n) for n in parse_networks("10.1.2.3/8,::1")] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match=r"'10\.0\.0/8' is not an IP network"):
        parse_networks("10.0.0.0/8,10.0.0/8")
    with pytest.raises(ValueError, match="is not an IP network"):
        parse_networks("ci.example.com")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("localhost", "127.0.0.1"),
        ("LOCALHOST.", "127.0.0.1"),
        ("api.localhost", "127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
        ("localhost.example.com", None),
    ],
)
def test_literal_addresses_are_read_without_a_lookup(host: str, address: str | None) -> None:
    got = literal_address(host)
    assert (None if got is None else str(got)) == address
