"""From what a test touched to the smallest marker that lets it run.

Pure (no pytest), so the rules can be tested as data. An audit run
(``--permission-audit``) records every access a test made beyond the
implicit grants, as the :class:`~pytest_permission.errors.Denial` records a
default-deny policy would have left; with the test's :class:`Places` they
become marker keywords:

- a path below the test's ``tmp_path`` becomes ``{tmp_path}`` (the folder is
  new and empty for every test, so whatever is below it the test made);
- a path below the test file's folder becomes ``{testdir}/...``, one below
  the project ``{rootdir}/...``; two or more entries of one folder there
  become that folder. The folder of one entry alone is not granted: that
  would grant its neighbours too;
- a path elsewhere in the temp folder (``mkstemp`` names change every run)
  becomes the temp folder, with a note saying so; any other path stays as
  it is, never collapsed: widening a grant outside the project is for a
  person to decide;
- a host keeps its port unless the port is 0 or in the ephemeral range,
  which changes every run (a test server on a free port); a host name
  covers the addresses of the same port when it is ``localhost``;
- a switch scope (``child``, ``worker``, ``addon``, ``ffi``, ``inspector``)
  becomes ``True``; an ``env`` variable is named.

The JSON written by ``--permission-audit-json`` (:func:`audit_json`)::

    {
      "version": 1,
      "tests": {
        "<node id>": {
          "outcome": "passed" | "failed" | "skipped",
          "marker": "@pytest.mark.permission(...)",
          "grants": {"<keyword>": ["<entry>", ...] | true},
          "notes": ["<why an entry is wider than what was touched>", ...],
          "accesses": [
            {"permission": "<as AccessDenied.permission>",
             "resource": "<as AccessDenied.resource>" | null,
             "where": "<file>:<line>"}
          ]
        }
      }
    }

``grants`` holds the marker's keywords in scope-table order (and
``"implicit": false`` when the test ran without implicit grants); tests
appear sorted by node id; ``accesses`` in the order they first happened.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pytest_permission import hosts, scopes
from pytest_permission.errors import Denial
from pytest_permission.policy import NameRule
from pytest_permission.scopes import Kind, Scope

VERSION = 1
"""Of the audit JSON and of the baseline file."""

Grants = dict[str, "list[str] | bool"]
"""Marker keywords to their entries (paths, hosts, names) or ``True``/``False``."""

EPHEMERAL = (32768, 65535)
"""Ports the system hands out when asked for any port, where it cannot say."""

_BY_PERMISSION: dict[str, Scope] = {s.permission: s for s in scopes.GRANTABLE}
_PLACEHOLDER = re.compile(r"\{(tmp_path|testdir|rootdir)\}")


def ephemeral_ports() -> tuple[int, int]:
    """The range free ports come from (Linux says; elsewhere a safe guess)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low, high = file.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return EPHEMERAL


@dataclass(frozen=True)
class Places:
    """Where one test ran: what placeholders and collapsing are measured against."""

    rootdir: str
    testdir: str
    tempdir: str
    tmp_path: str | None = None
    ephemeral: tuple[int, int] = EPHEMERAL
    implicit: bool = True
    """Whether the test ran with implicit grants: ``implicit=False`` in the marker if not."""

    def to_dict(self) -> dict[str, object]:
        return {
            "rootdir": self.rootdir,
            "testdir": self.testdir,
            "tempdir": self.tempdir,
            "tmp_path": self.tmp_path,
            "ephemeral": list(self.ephemeral),
            "implicit": self.implicit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Places:
        ports = data.get("ephemeral")
        low, high = ports if isinstance(ports, (list, tuple)) else EPHEMERAL
        tmp_path = data.get("tmp_path")
        return cls(
            str(data["rootdir"]),
            str(data["testdir"]),
            str(data["tempdir"]),
            None if tmp_path is None else str(tmp_path),
            (int(low), int(high)),
            bool(data.get("implicit", True)),
        )


@dataclass
class Needs:
    """What one test needs, per marker keyword, before folders are collapsed."""

    entries: dict[str, set[str]] = field(default_factory=dict)
    switches: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    implicit: bool = True

    def add(self, keyword: str, entry: str) -> None:
        self.entries.setdefault(keyword, set()).add(entry)

    def note(self, text: str) -> None:
        self.notes = sorted({*self.notes, text})


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep)
    return path == folder or path.startswith(folder + os.sep)


def placed(path: str, places: Places) -> str:
    """``path`` with the narrowest placeholder that fits, the rest kept as written."""
    for name in ("tmp_path", "testdir", "rootdir"):
        folder = getattr(places, name)
        if folder is not None and _under(path, folder):
            return "{" + name + "}" + path[len(folder.rstrip(os.sep)) :]
    return path


def needs(accesses: Iterable[Denial], places: Places) -> Needs:
    """What the recorded accesses of one test ask for."""
    out = Needs(implicit=places.implicit)
    for access in accesses:
        scope = _BY_PERMISSION.get(access.permission)
        if scope is None or scope.keyword is None:
            continue
        keyword, resource = scope.keyword, access.resource
        if scope.kind is Kind.SWITCH or resource is None:
            out.switches.add(keyword)
        elif scope.kind is Kind.PATHS:
            _add_path(out, keyword, resource, places)
        elif scope.kind is Kind.HOSTS:
            _add_host(out, resource, places)
        else:
            out.add(keyword, resource)
    return out


def _add_path(out: Needs, keyword: str, path: str, places: Places) -> None:
    entry = placed(path, places)
    if entry.startswith("{tmp_path}"):
        out.add(keyword, "{tmp_path}")
    elif entry == path and _under(path, places.tempdir):
        out.add(keyword, places.tempdir)
        out.note(
            f"{keyword}: {places.tempdir} is the whole temp folder (the test used a "
            "temporary file of its own): the tmp_path fixture would keep the grant narrow"
        )
    else:
        out.add(keyword, entry)


def _add_host(out: Needs, resource: str, places: Places) -> None:
    if resource.startswith(("/", "@")):  # a Unix socket
        out.add("net", placed(resource, places))
        return
    try:
        host, port = hosts.split(resource)
    except ValueError:  # netlink, packet, bluetooth...: only net=True grants them
        out.switches.add("net")
        out.note(f"net: {resource} is not a host: only net=True grants it")
        return
    low, high = places.ephemeral
    if port is not None and (port == 0 or low <= port <= high):
        port = None  # a free port, different every run
    out.add("net", hosts.format_endpoint(host, port))


def covers(keyword: str, grant: str, entry: str) -> bool:
    """Whether the marker entry ``grant`` allows the observed ``entry`` (both placed)."""
    if grant == entry:
        return True
    scope = scopes.by_keyword(keyword)
    if scope is None:
        return False
    if scope.kind is Kind.PATHS:
        if grant.endswith("*"):
            return entry.startswith(grant[:-1])
        return entry.startswith(grant.rstrip("/") + "/")
    if scope.kind is Kind.NAMES:
        return NameRule(grant).covers(entry)
    if scope.kind is Kind.HOSTS and not entry.startswith(("/", "@")):
        try:
            return hosts.parse(grant).covers(*hosts.split(entry))
        except ValueError:
            return False
    return False


def _collapsed(keyword: str, entries: set[str]) -> list[str]:
    """Entries of one folder in the project merged into it, then covered ones dropped."""
    by_folder: dict[str, int] = {}
    for entry in entries:
        by_folder[posixpath.dirname(entry)] = by_folder.get(posixpath.dirname(entry), 0) + 1
    merged = set()
    for entry in entries:
        folder = posixpath.dirname(entry)
        inside = _PLACEHOLDER.match(folder) is not None and folder != "{tmp_path}"
        merged.add(folder if inside and by_folder[folder] > 1 else entry)
    return sorted(e for e in merged if not any(covers(keyword, o, e) for o in merged if o != e))


def grants(found: Needs) -> Grants:
    """The marker's keywords, in scope-table order."""
    out: Grants = {}
    for scope in scopes.GRANTABLE:
        keyword = scope.keyword
        if keyword is None:
            continue
        if keyword in found.switches:
            out[keyword] = True
        elif keyword in found.entries:
            out[keyword] = _collapsed(keyword, found.entries[keyword])
    if not found.implicit:
        out["implicit"] = False
    return out


def marker(granted: Mapping[str, list[str] | bool]) -> str:
    """``@pytest.mark.permission(...)`` ready to paste."""
    parts = []
    for keyword, value in granted.items():
        text = repr(value) if isinstance(value, bool) else json.dumps(value)
        parts.append(f"{keyword}={text}")
    return f"@pytest.mark.permission({', '.join(parts)})"


@dataclass(frozen=True)
class Audited:
    """One test's audit: what it touched and the marker it needs."""

    nodeid: str
    outcome: str
    accesses: tuple[Denial, ...]
    places: Places

    @property
    def needs(self) -> Needs:
        return needs(self.accesses, self.places)

    def to_dict(self) -> dict[str, object]:
        found = self.needs
        granted = grants(found)
        return {
            "outcome": self.outcome,
            "marker": marker(granted),
            "grants": granted,
            "notes": found.notes,
            "accesses": [
                {"permission": d.permission, "resource": d.resource, "where": d.where}
                for d in self.accesses
            ],
        }


def audit_json(tests: Iterable[Audited]) -> str:
    """The ``--permission-audit-json`` document (schema in this module's docstring)."""
    body = {t.nodeid: t.to_dict() for t in sorted(tests, key=lambda t: t.nodeid)}
    return json.dumps({"version": VERSION, "tests": body}, indent=2) + "\n"
