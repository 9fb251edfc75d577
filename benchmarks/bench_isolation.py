"""Per-test cost of isolation, as ratios to a correct minimal fork-and-report plugin.

Run: ``python benchmarks/bench_isolation.py [N] [ROUNDS] [--big] [--hugepages]`` (defaults 300, 7).

In one run, with the variants interleaved ROUNDS times, it times pytest
sessions of N trivial tests in fresh processes:

* ``plain``: the tests, no plugin at work;
* ``(e) fork+report``: a minimal plugin (:data:`MINIMAL_FORK`) that forks
  where ``item.runtest()`` starts, runs the body in the child, makes the call
  report there, sends pytest's serialised report back as JSON and exits;
  the parent parses it and reaps the child. No enforcement: the practical
  floor for running a body in a forked child and reporting on it;
* ``permission fork, kernel off`` / ``kernel auto``: ``--permission`` with
  ``--permission-kernel=off`` / ``auto``;
* ``permission inline``: ``--permission --permission-isolation=inline``
  (no fork; the audit layer switched on around the call phase);
* ``pytest-forked`` where it is installed (it needs pytest 8).

Besides those, ``(f) bare fork``: N ``os.fork()`` + pipe + ``waitpid``
round trips inside a pytest session (a process of the same size).

A variant's cost per test is (its session - plain) / N, and for each
variant the script prints the minimum over the rounds (the machine is
shared; the minimum is the least disturbed run) and the median, each as
milliseconds and as a ratio to (e) measured in the same rounds.

``--big`` makes every session's pytest process about 150 MB (a conftest
keeps 150 MB of Python objects alive), as a large real suite's is: fork
costs grow with the size of the parent.

``--hugepages`` adds, for (e) and the forked variants, the same session
with glibc's allocator on transparent huge pages (:data:`HUGEPAGES`, the
README's one-line recommendation), each measured against a plain session
with that setting too: fewer, larger pages make fork copy fewer page-table
entries and take fewer copy-on-write faults.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORKED = importlib.util.find_spec("pytest_forked") is not None

FLOOR_TEST = '''
import os, time

def test_floor():
    n = {n}
    start = time.perf_counter()
    for _ in range(n):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            os.write(writer, b"x")
            os._exit(0)
        os.close(writer)
        os.read(reader, 1)
        os.close(reader)
        os.waitpid(pid, 0)
    print("FLOOR", (time.perf_counter() - start) / n)
'''

MINIMAL_FORK = '''
import json, os
import pytest


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item):
    """Fork where the body starts; the child reports, the parent parses the report."""
    body = item.runtest

    def forked():
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            call = pytest.CallInfo.from_call(body, when="call")
            report = pytest.TestReport.from_item_and_call(item, call)
            data = item.config.hook.pytest_report_to_serializable(
                config=item.config, report=report
            )
            os.write(writer, json.dumps(data).encode())
            os._exit(0)
        os.close(writer)
        chunks = []
        while chunk := os.read(reader, 65536):
            chunks.append(chunk)
        os.close(reader)
        os.waitpid(pid, 0)
        report = item.config.hook.pytest_report_from_serializable(
            config=item.config, data=json.loads(b"".join(chunks))
        )
        if report.failed:
            raise AssertionError(report.longreprtext)

    item.runtest = forked
    try:
        return (yield)
    finally:
        del item.runtest
'''
"""The reference (e): ``-p minimal_fork``. It wraps ``item.runtest`` (a
``pytest_runtest_call`` wrapper, so the body runs once, in the child)."""

HUGEPAGES = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
"""Python's objects from glibc's malloc, which maps its heap with huge pages."""

BIG_CONFTEST = '''
BALLAST = [str(i) * 8 for i in range(2_400_000)]  # about 150 MB of live objects
'''


def session(folder: Path, *args: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, check=True, capture_output=True, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    return time.perf_counter() - start


def floor(folder: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_floor.py"],
        cwd=folder, check=True, capture_output=True, text=True,
    ).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("FLOOR")))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    big = "--big" in sys.argv
    n = int(args[0]) if args else 300
    rounds = int(args[1]) if len(args) > 1 else 7
    variants: dict[str, tuple[str, ...]] = {
        "(e) fork+report": ("test_plain.py", "-p", "minimal_fork"),
        "permission fork, kernel off": (
            "test_plain.py", "--permission", "--permission-kernel=off"),
        "permission fork, kernel auto": (
            "test_plain.py", "--permission", "--permission-kernel=auto"),
        "permission inline": (
            "test_plain.py", "--permission", "--permission-isolation=inline"),
    }
    if FORKED:
        variants["pytest-forked"] = ("test_plain.py", "--forked")
    huge = [name for name in variants if "inline" not in name] if "--hugepages" in sys.argv else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_plain.py").write_text(
            "".join(f"def test_{i}():\n    pass\n\n" for i in range(n))
        )
        (folder / "test_floor.py").write_text(FLOOR_TEST.format(n=n))
        (folder / "minimal_fork.py").write_text(MINIMAL_FORK)
        if big:
            (folder / "conftest.py").write_text(BIG_CONFTEST)
        costs: dict[str, list[float]] = {
            name: [] for name in [*variants, *(f"{name}, huge pages" for name in huge)]
        }
        floors: list[float] = []
        for _ in range(rounds):
            plain = session(folder, "test_plain.py", "-p", "no:permission")
            for name, argv in variants.items():
                costs[name].append((session(folder, *argv) - plain) / n)
            if huge:
                plain = session(folder, "test_plain.py", "-p", "no:permission", env=HUGEPAGES)
                for name in huge:
                    cost = session(folder, *variants[name], env=HUGEPAGES) - plain
                    costs[f"{name}, huge pages"].append(cost / n)
            floors.append(floor(folder))
    reference = costs["(e) fork+report"]
    print(f"{n} trivial tests per session, {rounds} interleaved rounds"
          f"{', pytest process ~150 MB' if big else ''}; cost per test over plain pytest:")
    print(f"{'':44s} {'min ms':>7s} {'x (e)':>6s}   {'median ms':>9s} {'x (e)':>6s}")
    rows = {"(f) bare fork+pipe+waitpid": floors, **costs}
    for name, values in rows.items():
        low, mid = min(values), statistics.median(values)
        print(f"{name:44s} {low * 1e3:7.2f} {low / min(reference):6.2f}   "
              f"{mid * 1e3:9.2f} {mid / statistics.median(reference):6.2f}")
    print("targets: permission fork <= 1.15x (e); permission inline <= 0.1 ms over plain")


if __name__ == "__main__":
    main()
