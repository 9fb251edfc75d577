"""Coverage of forked test bodies: measured in the child, saved by the parent.

A forked child leaves with ``os._exit``, which skips coverage.py's save, and
pytest-cov 7 no longer handles forks, so without this the lines a restricted
test runs would never be counted. Writing a data file from the child would
need a write grant inside its sandbox (and, under the kernel layer, rights
on the data folder); instead the child's tracer records into an in-memory
:class:`coverage.CoverageData`, the child sends what it measured back with
its report as plain data (file names and line numbers or arcs: never
coverage's own serialised database, which is an SQL script the parent
would run), and the parent, unrestricted, checks the data's shape and
appends it to one parallel data file per process
(``<data_file>.<host>.pid<N>.X<random>x``). ``coverage combine``
and pytest-cov's own combine step pick that file up like any other parallel
file, so no grant is needed and nothing is written under enforcement.

Only coverage.py's public data API is used, plus three attributes of the
running measurement (``Coverage._collector``, ``Coverage._data`` and the
data's current context), read defensively: with a coverage.py that lacks
them the child simply is not measured.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_parent_file: Any = None
"""This process's parallel data file for its children's measurements, made on first use."""


def _running() -> Any:
    """The ``coverage.Coverage`` measuring this process, if one is."""
    coverage = sys.modules.get("coverage")
    current = getattr(getattr(coverage, "Coverage", None), "current", None)
    return current() if callable(current) else None


class ChildCoverage:
    """In the child: the running measurement redirected into memory."""

    def __init__(self, collector: Any, data: Any) -> None:
        self.collector = collector
        self.data = data

    def collected(self) -> dict[str, Any]:
        """What the child measured, as plain data for the parent."""
        self.collector.flush_data()
        data = self.data
        arcs = bool(data.has_arcs())
        measured = {
            name: sorted(data.arcs(name) if arcs else data.lines(name) or ())
            for name in data.measured_files()
        }
        tracers = {name: data.file_tracer(name) for name in measured}
        return {
            "context": getattr(data, "_current_context", None),
            "arcs": arcs,
            "measured": measured,
            "tracers": {name: t for name, t in tracers.items() if t},
        }


def capture() -> ChildCoverage | None:
    """Right after the fork: record the child's lines in memory from now on.

    Returns ``None`` when nothing measures this process.
    """
    cov = _running()
    collector = getattr(cov, "_collector", None)
    if cov is None or collector is None or not hasattr(collector, "use_data"):
        return None
    from coverage import CoverageData

    previous = getattr(collector, "covdata", None)
    data = CoverageData(no_disk=True)
    collector.use_data(data, cov.config.context)
    context = getattr(previous, "_current_context", None)
    if context:  # a dynamic context such as pytest-cov's --cov-context=test
        data.set_context(context)
    return ChildCoverage(collector, data)


def merge(payload: object) -> None:
    """In the parent: add a child's measurement to this process's parallel file.

    ``payload`` came from the child: anything but the shape
    :meth:`ChildCoverage.collected` makes is ignored.
    """
    global _parent_file
    data = payload.get("data") if isinstance(payload, dict) else None
    cov = _running()
    if cov is None or not isinstance(data, dict) or not isinstance(data.get("measured"), dict):
        return
    measured: dict[object, object] = data["measured"]
    from coverage import CoverageData

    arcs = data.get("arcs") is True
    checked = {
        name: [_point(p, arcs) for p in points]
        for name, points in measured.items()
        if isinstance(name, str) and isinstance(points, list)
    }
    child = CoverageData(no_disk=True)
    context = data.get("context")
    if isinstance(context, str) and context:
        child.set_context(context)
    if arcs:
        child.add_arcs(checked)
    else:
        child.add_lines(checked)
    tracers = data.get("tracers")
    if isinstance(tracers, dict):
        child.add_file_tracers(
            {n: t for n, t in tracers.items() if n in checked and isinstance(t, str)}
        )
    if _parent_file is None:
        _parent_file = CoverageData(basename=_data_file(cov), suffix=True)
    _parent_file.update(child)


def _point(point: object, arc: bool) -> Any:
    """A line number, or an arc ``(from, to)``; ``ValueError`` for anything else."""
    if arc and isinstance(point, list) and len(point) == 2:
        if all(type(n) is int for n in point):
            return (point[0], point[1])
    elif not arc and type(point) is int:
        return point
    raise ValueError(f"not coverage data: {point!r}")


def _data_file(cov: Any) -> str:
    """The measurement's data file, as it resolved it when it started.

    Resolved then, not now: a fixture may have changed the working directory.
    """
    own = getattr(cov, "_data", None)
    if own is not None:
        return str(own.base_filename())
    return os.path.abspath(str(cov.config.data_file))
