"""From what a test touched to the smallest marker that lets it run.

Pure (no pytest), so the rules can be tested as data. An audit run
(``--permission-audit``) records every access a test made beyond the
implicit grants, as the :class:`~pytest_permission.errors.Denial` records a
default-deny policy would have left; with the test's :class:`Places` they
become marker keywords:

- a path is written from the narrowest folder it is below: ``{tmp_path}``,
  ``{testdir}``, ``{rootdir}``, ``{basetemp}`` (the session's
  ``tmp_path_factory`` folder), ``{tempdir}`` (the system's temporary
  folder) or ``~`` (the home folder), so that the grant holds on any
  machine, in any run, serial or under xdist; a path below none of them
  stays as it is, never widened (that is for a person to decide);
- below ``{tmp_path}`` it is ``{tmp_path}``: the folder is new and empty
  for every test, so whatever is below it the test made;
- below ``{basetemp}`` it is the folder ``tmp_path_factory.mktemp()``
  made, with any number (``{basetemp}/data*``), as the number depends on
  the order fixtures run; a note names the fixture whose value it is;
- below ``{tempdir}`` (``mkstemp``, ``mkdtemp``: names that change every
  run) it is ``{tempdir}/tmp*``, the names ``tempfile`` makes, or the whole
  temporary folder for other names; a note says why and names the fixture
  that made the folder where one did;
- below ``{testdir}`` or ``{rootdir}``, two or more entries of one folder
  become that folder; the folder of one entry alone is not granted: that
  would grant its neighbours too;
- a program the test started, and each existing path it was given, must be
  readable to run (the kernel layer checks it, and an interpreter reads its
  script), unless it is a system program: the audit layer records them;
- a file the test wrote and reads back needs ``fs_read`` besides
  ``fs_write``: as in Node, writing does not imply reading, and the kernel
  layer cannot tell a file the test made from one it found;
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
_PROJECT = re.compile(r"\{(testdir|rootdir)\}")
"""Folders whose entries collapse into the folder: the project's."""
_NUMBERED = re.compile(r"(.*?)\d+")
"""A folder ``tmp_path_factory.mktemp(name)`` made: the name and a number."""
_TEMPFILE = re.compile(r"tmp[a-z0-9_]{8}")
"""A name ``tempfile`` makes by default: ``tmp`` and eight random characters."""


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
    """Where one test ran: what placeholders and collapsing are measured against.

    Made in the pytest process before the test runs (never from what the
    test's own process reads), and carried on the report as plain data.
    """

    rootdir: str
    testdir: str
    tempdir: str
    tmp_path: str | None = None
    ephemeral: tuple[int, int] = EPHEMERAL
    implicit: bool = True
    """Whether the test ran with implicit grants: ``implicit=False`` in the marker if not."""
    basetemp: str | None = None
    """``tmp_path_factory.getbasetemp()``: where session and module fixtures make folders."""
    home: str | None = None
    fixtures: tuple[tuple[str, str], ...] = ()
    """``(name, path)`` of the test's fixtures whose value is a temporary path."""

    def to_dict(self) -> dict[str, object]:
        return {
            "rootdir": self.rootdir,
            "testdir": self.testdir,
            "tempdir": self.tempdir,
            "tmp_path": self.tmp_path,
            "ephemeral": list(self.ephemeral),
            "implicit": self.implicit,
            "basetemp": self.basetemp,
            "home": self.home,
            "fixtures": [list(pair) for pair in self.fixtures],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Places:
        ports = data.get("ephemeral")
        low, high = ports if isinstance(ports, (list, tuple)) else EPHEMERAL
        fixtures = data.get("fixtures")
        return cls(
            str(data["rootdir"]),
            str(data["testdir"]),
            str(data["tempdir"]),
            _optional(data.get("tmp_path")),
            (int(low), int(high)),
            bool(data.get("implicit", True)),
            _optional(data.get("basetemp")),
            _optional(data.get("home")),
            tuple(
                (str(name), str(path))
                for name, path in (fixtures if isinstance(fixtures, list) else ())
            ),
        )

    def folders(self) -> list[tuple[str, str]]:
        """``(folder, placeholder)`` for each folder a path can be written from."""
        found = [
            (self.tmp_path, "{tmp_path}"),
            (self.testdir, "{testdir}"),
            (self.rootdir, "{rootdir}"),
            (self.basetemp, "{basetemp}"),
            (self.tempdir, "{tempdir}"),
            (self.home, "~"),
        ]
        return [(f.rstrip(os.sep), name) for f, name in found if f and f.rstrip(os.sep)]

    def fixture_at(self, path: str) -> str | None:
        """The fixture whose value is ``path`` or a folder above it, nearest first."""
        owners = [(len(p), name) for name, p in self.fixtures if _under(path, p)]
        return max(owners)[1] if owners else None


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class Needs:
    """What one test needs, per marker keyword, before folders are collapsed."""

    entries: dict[str, set[str]] = field(default_factory=dict)
    switches: set[str] = field(default_factory=set)
    why: dict[str, set[str]] = field(default_factory=dict)
    """Why an entry is wider than what was touched: the text, to the keywords it is about."""
    implicit: bool = True

    def add(self, keyword: str, entry: str) -> None:
        self.entries.setdefault(keyword, set()).add(entry)

    def note(self, keyword: str, text: str) -> None:
        self.why.setdefault(text, set()).add(keyword)

    @property
    def notes(self) -> list[str]:
        """``keyword, keyword: text``, one line per text."""
        order = scopes.keywords()
        return sorted(
            f"{', '.join(sorted(keywords, key=order.index))}: {text}"
            for text, keywords in self.why.items()
        )


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep)
    return path == folder or path.startswith(folder + os.sep)


def placed(path: str, places: Places) -> str:
    """``path`` written from the narrowest folder of ``places`` it is below."""
    below = [(len(f), f, name) for f, name in places.folders() if _under(path, f)]
    if not below:
        return path
    _, folder, name = max(below, key=lambda found: found[0])
    return name + path[len(folder) :]


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
    head, _, rest = entry.partition("/")
    name = rest.split("/", 1)[0]
    if head == "{tmp_path}":
        out.add(keyword, "{tmp_path}")
    elif head == "{basetemp}" and name:
        _add_made(out, keyword, path, name, places)
    elif head == "{tempdir}" and name:
        _add_temporary(out, keyword, path, name, places)
    else:
        out.add(keyword, entry)
        if entry == "{rootdir}":
            out.note(
                keyword,
                "{rootdir} is the whole project: the test used the project folder itself "
                "(listed it, changed into it), and a folder is granted with what is below it",
            )


def _add_made(out: Needs, keyword: str, path: str, name: str, places: Places) -> None:
    """A folder ``tmp_path_factory.mktemp()`` made: any number, as the order of fixtures decides."""
    numbered = _NUMBERED.fullmatch(name)
    if numbered is None:
        out.add(keyword, "{basetemp}/" + name)
        return
    grant = "{basetemp}/" + numbered.group(1) + "*"
    out.add(keyword, grant)
    fixture = places.fixture_at(path)
    made = "a folder" if fixture is None else f"the folder the fixture `{fixture}`"
    out.note(
        keyword,
        f"{grant} is {made} made with tmp_path_factory.mktemp({numbered.group(1)!r}), "
        "whatever its number (it depends on the order fixtures run)",
    )


def _add_temporary(out: Needs, keyword: str, path: str, name: str, places: Places) -> None:
    """A file or folder of the system's temporary folder, which no placeholder names."""
    fixture = places.fixture_at(path)
    if fixture is None:
        used, better = "a temporary file or folder of its own", "the tmp_path fixture"
    else:
        used, better = f"the folder the fixture `{fixture}` made", "tmp_path_factory in the fixture"
    if _TEMPFILE.match(name):
        grant, what = "{tempdir}/tmp*", "every name tempfile makes, as it makes one anew every run"
    else:
        grant, what = "{tempdir}", "the whole temporary folder"
    out.add(keyword, grant)
    out.note(keyword, f"{grant} is {what}: the test used {used}; {better} would keep it narrow")


def _add_host(out: Needs, resource: str, places: Places) -> None:
    if resource.startswith(("/", "@")):  # a Unix socket
        out.add("net", placed(resource, places))
        return
    try:
        host, port = hosts.split(resource)
    except ValueError:  # netlink, packet, bluetooth...: only net=True grants them
        out.switches.add("net")
        out.note("net", f"{resource} is not a host: only net=True grants it")
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
        inside = _PROJECT.match(folder) is not None
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
