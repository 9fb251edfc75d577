"""Coverage of forked test bodies: measured in the child, saved by the parent.

A forked child leaves with ``os._exit``, which skips coverage.py's save, and
pytest-cov 7 no longer handles forks, so without this the lines a restricted
test runs would never be counted. Writing a data file from the child would
need a write grant inside its sandbox (and, under the kernel layer, rights
on the data folder); instead the child's tracer records into an in-memory
:class:`coverage.CoverageData`, the child sends it back with its report,
and the parent, unrestricted, appends it to one parallel data file per
process (``<data_file>.<host>.pid<N>.X<random>x``). ``coverage combine``
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

    def collected(self) -> bytes:
        """What the child measured, serialised for the parent."""
        self.collector.flush_data()
        data: bytes = self.data.dumps()
        return data


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


def merge(payload: bytes | None) -> None:
    """In the parent: add a child's measurement to this process's parallel file."""
    global _parent_file
    if not payload:
        return
    cov = _running()
    if cov is None:
        return
    from coverage import CoverageData

    child = CoverageData(no_disk=True)
    child.loads(payload)
    if _parent_file is None:
        _parent_file = CoverageData(basename=_data_file(cov), suffix=True)
    _parent_file.update(child)


def _data_file(cov: Any) -> str:
    """The measurement's data file, as it resolved it when it started.

    Resolved then, not now: a fixture may have changed the working directory.
    """
    own = getattr(cov, "_data", None)
    if own is not None:
        return str(own.base_filename())
    return os.path.abspath(str(cov.config.data_file))
