"""The ``net`` scope: socket addresses and name look-ups.

A socket operation names an endpoint (``host:port``, or the socket path of a
Unix-domain socket); a look-up names a host, and a port when it asks for one.
Both need a grant that covers them. Connecting by address to what a granted
name resolved to is allowed too (spec section 3), so the resolver functions
are wrapped to remember those addresses; ``drop()`` forgets them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from pytest_permission import paths
from pytest_permission.audit.guard import Guard, Handler
from pytest_permission.errors import hide_under_a_denial
from pytest_permission.hosts import format_endpoint
from pytest_permission.scopes import NET

__tracebackhide__ = hide_under_a_denial
"""A denial's traceback ends where the access was asked for (pytest hides these frames)."""

_INET = (socket.AF_INET, socket.AF_INET6)
_UNIX = getattr(socket, "AF_UNIX", None)
_WILDCARD = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
"""What an empty host means to ``bind``/``connect``."""


def canonical_host(value: object) -> str:
    """A host as grants spell it: a compressed IP (IPv4-mapped as IPv4) or a lower-case name."""
    text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
    if text == "<broadcast>":
        return "255.255.255.255"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text.lower().rstrip(".")
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def socket_path(address: object) -> str:
    """The path a Unix-domain address names; ``@name`` for the abstract namespace."""
    if isinstance(address, (bytearray, memoryview)):
        address = bytes(address)
    text = paths.as_str(address, "AF_UNIX address")
    if not text or text.startswith("\0"):
        return "@" + text[1:]  # empty: Linux picks an abstract name (autobind)
    return paths.normalise(text)


def service_port(port: object) -> int | None:
    """The port a look-up asks for; ``None`` when it asks for none (or an unknown service)."""
    if isinstance(port, int) or port is None:
        return port
    text = os.fsdecode(port) if isinstance(port, bytes) else str(port)
    if text.isdigit():
        return int(text)
    try:
        return socket.getservbyname(text)
    except OSError:
        return None  # getaddrinfo itself will fail on it


def install(guard: Guard) -> dict[str, Handler]:
    resolved: dict[str, set[int | None]] = {}
    """Address -> ports a granted name that resolved to it is granted for (None: any)."""
    guard.on_change(resolved.clear)

    def allowed(host: str, port: int | None) -> bool:
        """Whether ``host`` may be used at ``port``; ``None`` (a look-up) means at some port."""
        grant = guard.effective.grant(NET)
        if grant.everything:
            return True
        if any(rule.covers(host, rule.port if port is None else port) for rule in grant.rules):
            return True
        return any(p is None or port is None or p == port for p in resolved.get(host, ()))

    def check(host: str, port: int | None) -> None:
        if not allowed(host, port):
            guard.deny(NET, format_endpoint(host, port))

    def on_address(args: tuple[Any, ...]) -> None:
        sock, address = args
        if address is None:
            return  # sendmsg on a connected socket: checked at connect
        family = sock.family
        if family == _UNIX:
            check(socket_path(address), None)
        elif family in _INET and isinstance(address, tuple) and len(address) >= 2:
            host = canonical_host(address[0]) or _WILDCARD[family]
            check(host, address[1] if isinstance(address[1], int) else None)
        elif not guard.effective.grant(NET).everything:
            guard.deny(NET, str(address))  # netlink, packet, bluetooth...: only net=True

    def on_lookup(args: tuple[Any, ...]) -> None:
        host = args[0]
        if isinstance(host, (str, bytes)) and host:  # None/'' resolve no name
            check(canonical_host(host), service_port(args[1]) if len(args) > 1 else None)

    def on_nameinfo(args: tuple[Any, ...]) -> None:
        sockaddr = args[0]
        if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
            on_lookup(sockaddr)

    def remember(name: object, addresses: Iterable[object]) -> None:
        if not isinstance(name, (str, bytes)) or not name:
            return
        host = canonical_host(name)
        rules = guard.effective.grant(NET).rules
        ports = {rule.port for rule in rules if rule.covers(host, rule.port)}
        if ports:
            for address in addresses:
                resolved.setdefault(canonical_host(address), set()).update(ports)

    def wrap(name: str, addresses: Callable[[Any], Iterable[object]]) -> None:
        real = getattr(socket, name)

        @functools.wraps(real)
        def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
            result = real(host, *args, **kwargs)
            remember(host, addresses(result))
            return result

        setattr(socket, name, resolve)

    wrap("getaddrinfo", lambda infos: (i[4][0] for i in infos if i[0] in _INET))
    wrap("gethostbyname", lambda address: (address,))
    wrap("gethostbyname_ex", lambda entry: entry[2])
    return {
        "socket.connect": on_address,
        "socket.bind": on_address,
        "socket.sendto": on_address,
        "socket.sendmsg": on_address,
        "socket.getaddrinfo": on_lookup,
        "socket.gethostbyname": on_lookup,
        "socket.gethostbyname_ex": on_lookup,
        "socket.gethostbyaddr": on_lookup,
        "socket.getnameinfo": on_nameinfo,
    }
