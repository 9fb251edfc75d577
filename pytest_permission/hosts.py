"""Network grants: ``host``, ``host:port``, ``[v6]:port``, ``*.domain``, socket paths.

Node 26's ``--allow-net`` is all or nothing; the host forms are Deno's, which
Node users meet in the same breath. ``localhost`` covers the loopback
addresses, ``*.example.com`` covers names below ``example.com`` (not the
name itself), a grant without a port covers every port, and an absolute
path names a Unix-domain socket.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

ACCEPTED = (
    "'host', 'host:port', '[v6]:port', '*.example.com', an IP address, "
    "an absolute Unix-socket path, True or False"
)

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


@dataclass(frozen=True)
class HostRule:
    host: str
    """Lower-case name, compressed IP address, or socket path."""
    port: int | None
    wildcard: bool = False

    @property
    def text(self) -> str:
        """The grant as ``drop()`` names it and the error shows it."""
        return format_endpoint(("*." if self.wildcard else "") + self.host, self.port)

    def covers(self, host: str, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        if host == self.host:
            return True
        return self.host == "localhost" and is_loopback(host)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def format_endpoint(host: str, port: int | None) -> str:
    """``host:port``, with brackets around an IPv6 address, as errors show it."""
    if host.startswith("/") or host.startswith("@"):
        return host
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _host(text: str) -> str:
    """A canonical host: lower-case name without a final dot, or a compressed IP."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    if not name or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"malformed host {text!r}")
    return name


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"malformed port in {whole!r}: expected 0-65535")
    return int(text)


def split(endpoint: str) -> tuple[str, int | None]:
    """``(host, port)`` of an endpoint text; ``port`` is ``None`` when absent.

    Raises ``ValueError`` naming what was wrong and the accepted forms.
    """
    text = endpoint.strip()
    if not text:
        raise ValueError(f"empty host; accepted: {ACCEPTED}")
    if text.startswith("/"):
        return text, None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed host {endpoint!r}; accepted: {ACCEPTED}")
        try:
            host = str(ipaddress.IPv6Address(inside))
        except ValueError:
            raise ValueError(f"malformed IPv6 address in {endpoint!r}") from None
        return host, _port(rest[1:], endpoint) if rest else None
    if text.count(":") > 1:  # a bare IPv6 address, no port
        try:
            return str(ipaddress.IPv6Address(text)), None
        except ValueError:
            raise ValueError(f"malformed host {endpoint!r}; accepted: {ACCEPTED}") from None
    name, colon, port = text.partition(":")
    try:
        host = _host(name)
    except ValueError as exc:
        raise ValueError(f"{exc}; accepted: {ACCEPTED}") from None
    return host, _port(port, endpoint) if colon else None


def parse(grant: str) -> HostRule:
    """The rule for one host grant."""
    wildcard = grant.strip().startswith("*.")
    host, port = split(grant.strip()[2:] if wildcard else grant)
    return HostRule(host, port, wildcard)
