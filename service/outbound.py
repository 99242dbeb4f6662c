"""Where the service may send a request on a team's behalf: public addresses only.

A webhook delivery is a request the service makes from inside the operator's network,
to a URL a team chose. Pointed at ``127.0.0.1``, ``10.0.0.5`` or ``169.254.169.254``
(a cloud's metadata service) it would reach machines no team should reach, and the
delivery log's status codes and errors would map them (server-side request forgery).
So an address is allowed when it is *global* -- :attr:`ipaddress.IPv4Address.is_global`:
not private, loopback, link-local, shared (100.64/10), reserved, unspecified or
multicast -- or lies in a network the operator allows (``MPQ_WEBHOOK_ALLOWED_NETWORKS``,
e.g. ``10.20.0.0/16`` for an in-house CI server). An IPv6 address that stands for an
IPv4 one (mapped ``::ffff:127.0.0.1``, NAT64 ``64:ff9b::7f00:1``, 6to4 ``2002:7f00:1::``)
is judged by the IPv4 address.

The check is made when a webhook is created or changed, on a host written as an
address or ``localhost`` (:func:`literal_address`), and at every delivery on each
address the host name resolves to, the connection then going to the address checked
(:mod:`workers.webhook_http`): a name that resolves elsewhere a moment later (DNS
rebinding) changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["IPAddress", "IPNetwork", "ip_literal", "literal_address", "parse_networks", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOCALHOST = ipaddress.ip_address("127.0.0.1")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated list of CIDRs (an address alone is a /32 or /128).

    Raises:
        ValueError: an entry is not a network (named, with an example of one).
    """
    networks = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry[:60]!r} is not an IP network; give networks separated by commas, "
                "as in 10.20.0.0/16,192.168.1.7"
            ) from None
    return tuple(networks)


def ip_literal(text: str) -> IPAddress | None:
    """The address ``text`` writes (brackets and an IPv6 zone index aside), or ``None``
    when it is a name."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` names without a lookup: an IP literal, or ``localhost``
    (and its subdomains, which resolvers answer with loopback); ``None`` for a name."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return _LOCALHOST
    return ip_literal(name)


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a request may not go to ``address`` (``"a loopback address"``...), or ``None``."""
    judged = _embedded_ipv4(address) or address
    if any(judged in network or address in network for network in allowed):
        return None
    if judged.is_global and not judged.is_multicast:
        return None
    for kind, flag in (
        ("a loopback address", judged.is_loopback),
        ("a link-local address", judged.is_link_local),
        ("a multicast address", judged.is_multicast),
        ("an unspecified address", judged.is_unspecified),
        ("a private address", judged.is_private),
    ):
        if flag:
            return kind
    return "not a public address"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped (``::ffff:a.b.c.d``), NAT64
    (``64:ff9b::a.b.c.d``) or 6to4 (``2002:aabb:ccdd::``); ``None`` otherwise."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
