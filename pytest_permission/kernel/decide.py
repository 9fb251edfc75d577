"""What the supervisor decides from: the test's grants, as the audit layer reads them.

Built in the pytest process before the fork (:func:`view`), used by the
supervisor's thread while the test runs. Pure apart from resolving host
names: a call is allowed exactly when the audit layer would allow it, and
left to Landlock (``CONTINUE``) wherever Landlock alone already says it.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pytest_permission import hosts, paths, scopes
from pytest_permission.hosts import HostRule
from pytest_permission.kernel.landlock import FILE_RIGHTS
from pytest_permission.policy import Policy

DNS_PORT = 53


@dataclass(frozen=True)
class Paths:
    """One file-system scope: everything, or rules (keyed by their text as written)."""

    everything: bool = False
    rules: Mapping[str, paths.PathRule] = field(default_factory=dict)
    """Grant text (as ``drop()`` names it) -> the rule resolved through links."""
    extra: tuple[paths.PathRule, ...] = ()
    """What the tools beside the test need: never dropped."""

    def covers(self, real: str) -> bool:
        if self.everything:
            return True
        return paths.covered(self.extra, real) or any(
            rule.covers(real) for rule in self.rules.values()
        )

    def keeping(self, texts: object) -> Paths:
        """Only the grants named in ``texts`` (``True``: all); never more than now."""
        if texts is True:
            return self
        kept = texts if isinstance(texts, list) else []
        return replace(
            self, everything=False,
            rules={t: r for t, r in self.rules.items() if t in kept},
        )


@dataclass(frozen=True)
class Net:
    """The ``net`` grants, decided by address and port."""

    rules: tuple[HostRule, ...]
    nameservers: tuple[str, ...] = ()
    """Reachable on port 53 when a grant names a host (that is how names resolve)."""
    resolved: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)
    """Host name -> the addresses it resolved to here (filled on demand)."""

    def allows(self, host: str, port: int | None) -> bool:
        """Whether ``host`` (an address) at ``port`` is granted."""
        for rule in self.rules:
            if rule.port is not None and port != rule.port:
                continue
            if rule.covers(host, port) or rule.wildcard:  # a wildcard: any address (widened)
                return True
            if not _address(rule.host) and host in self.addresses(rule.host):
                return True
        return port == DNS_PORT and host in self.nameservers

    def addresses(self, name: str) -> frozenset[str]:
        """What ``name`` resolves to, asked once per test (the supervisor's own look-up)."""
        found = self.resolved.get(name)
        if found is None:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except OSError:
                infos = []
            found = frozenset(canonical(str(info[4][0])) for info in infos)
            self.resolved[name] = found
        return found

    def keeping(self, texts: object) -> Net:
        if texts is True:
            return self
        kept = texts if isinstance(texts, list) else []
        return replace(self, rules=tuple(r for r in self.rules if r.text in kept))


@dataclass(frozen=True)
class View:
    """Everything the supervisor decides from, for one test."""

    read: Paths
    write: Paths
    landlock: Mapping[str, tuple[int, bool]]
    """Real path -> (rights, is a folder), for every Landlock rule of the first layer."""
    net: Net | None
    """``None``: addresses are not the supervisor's to decide."""

    def narrowed(self, described: object) -> View:
        """The view after ``drop()``: ``described`` is the policy's :meth:`Policy.describe`
        as the child sent it. Untrusted, so it can only take grants away."""
        grants = described if isinstance(described, dict) else {}
        net = self.net.keeping(grants.get("net", [])) if self.net is not None else None
        return replace(
            self,
            read=self.read.keeping(grants.get(scopes.FS_READ.keyword, [])),
            write=self.write.keeping(grants.get(scopes.FS_WRITE.keyword, [])),
            net=net,
        )

    def landlock_allows(self, real: str, rights: int) -> bool:
        """Whether the first Landlock layer alone allows ``rights`` on ``real``: the
        rights of a rule on it and of those on the folders above it, as Landlock
        adds them up."""
        rules = self.landlock
        exact = rules.get(real)
        found = 0 if exact is None else exact[0] if exact[1] else exact[0] & FILE_RIGHTS
        folder = real
        while folder != os.sep:
            folder = os.path.dirname(folder)
            above = rules.get(folder)
            if above is not None and above[1]:
                found |= above[0]
        return found & rights == rights


def view(
    policy: Policy,
    *,
    read: Sequence[str],
    write: Sequence[str],
    landlock: Mapping[str, int],
    hosts_by_address: bool,
) -> View:
    """The supervisor's view of ``policy`` plus the tools' ``read``/``write`` grants."""

    def scope_paths(scope: scopes.Scope, extra: Sequence[str]) -> Paths:
        grant = policy.grant(scope)
        return Paths(
            everything=grant.everything,
            rules={rule.text: paths.resolved(rule) for rule in grant.rules},
            extra=tuple(paths.resolved(paths.parse(text)) for text in extra),
        )

    found: dict[str, tuple[int, bool]] = {}
    for path, rights in landlock.items():
        real, folder = _real(path)
        before = found.get(real, (0, folder))[0]
        found[real] = (before | rights, folder)
    net = None
    if hosts_by_address:
        rules = tuple(r for r in policy.grant(scopes.NET).rules if not r.host.startswith(os.sep))
        named = any(r.wildcard or not _address(r.host) for r in rules)
        net = Net(rules, nameservers() if named else ())
    return View(scope_paths(scopes.FS_READ, read), scope_paths(scopes.FS_WRITE, write),
                found, net)


@functools.lru_cache(maxsize=4096)
def _real(path: str) -> tuple[str, bool]:
    """A Landlock rule's path resolved, and whether a folder: looked up once per
    session for the implicit grants' paths, which every supervised test names.
    A link changed since can only make the supervisor leave more to Landlock."""
    real = paths.resolve(path)
    return real, os.path.isdir(real)


def nameservers(path: str = "/etc/resolv.conf") -> tuple[str, ...]:
    """The addresses ``resolv.conf`` sends look-ups to."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(canonical(fields[1].split("%", 1)[0]))
    return tuple(found)


def canonical(text: str) -> str:
    """An address as grants spell it: compressed, IPv4-mapped IPv6 as IPv4."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def _address(host: str) -> bool:
    """Whether a grant names an address (or ``localhost``), not a name to resolve."""
    return host == "localhost" or hosts.is_loopback(host) or _is_ip(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
