"""Per-test cost of forked isolation, as a ratio to a bare fork floor.

Run: ``python benchmarks/bench_isolation.py [N] [ROUNDS]`` (defaults 300, 5).

In one run, interleaved ROUNDS times, it times in fresh processes: a pytest
session of N trivial tests without the marker; the same N tests under
``@pytest.mark.permission()``; the same N tests under a minimal plugin that
forks each body and does nothing else (what any fork per test costs); and,
inside a pytest session (so the process has the same size), N bare
``os.fork()`` + pipe + ``waitpid`` round trips. A variant's cost per test is
(its session - plain) / N; the floor is the bare round trip; the script
prints medians, page faults per test, and ratios to the floor. The machine
is shared and noisy, so only ratios measured together mean anything.

Where pytest-forked is importable (it needs pytest 8), the same N tests run
with ``--forked`` in the same rounds and its ratio is printed too:
``python -m venv v8 && v8/bin/pip install 'pytest<9' pytest-forked -e .``
then ``v8/bin/python benchmarks/bench_isolation.py``.
"""

from __future__ import annotations

import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORKED = importlib.util.find_spec("pytest_forked") is not None

FLOOR_TEST = '''
import os, resource, time

def faults():
    return sum(resource.getrusage(who).ru_minflt
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

def test_floor():
    n = {n}
    before = faults()
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
    print("FLOOR", (time.perf_counter() - start) / n, (faults() - before) / n)
'''


def _faults() -> int:
    """Minor page faults of the processes this one has waited for (and theirs)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def session(folder: Path, name: str, *extra: str) -> tuple[float, int]:
    """Wall time and page faults (the pytest process and its forked children)."""
    before = _faults()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name, *extra],
        cwd=folder, check=True, capture_output=True,
    )
    return time.perf_counter() - start, _faults() - before


def floor(folder: Path) -> tuple[float, float]:
    """Seconds and page faults per bare fork round trip."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_floor.py"],
        cwd=folder, check=True, capture_output=True, text=True,
    ).stdout
    line = next(line.split() for line in out.splitlines() if line.startswith("FLOOR"))
    return float(line[1]), float(line[2])


MINIMAL_FORK = '''
import os
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """The least a fork-per-test runner does: fork, run the body, exit, reap."""
    pid = os.fork()
    if pid == 0:
        try:
            item.runtest()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return True
'''
"""A plugin (``-p minimal_fork``) forking each test's body with nothing else:
no enforcement, no report, no output relay. Its cost is what forking per test
costs in a pytest session at all."""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    variants = {
        "pytest-permission": ("test_marked.py",),
        "minimal fork-per-test": ("test_plain.py", "-p", "minimal_fork"),
    }
    if FORKED:
        variants["pytest-forked"] = ("test_plain.py", "--forked")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        body = "".join(f"def test_{i}():\n    pass\n\n" for i in range(n))
        (folder / "test_plain.py").write_text(body)
        (folder / "test_marked.py").write_text(
            "import pytest\n\npytestmark = pytest.mark.permission()\n\n" + body
        )
        (folder / "test_floor.py").write_text(FLOOR_TEST.format(n=n))
        (folder / "minimal_fork.py").write_text(MINIMAL_FORK)
        costs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        floors: list[tuple[float, float]] = []
        for _ in range(rounds):
            plain, plain_faults = session(folder, "test_plain.py")
            for name, args in variants.items():
                seconds, fault_count = session(folder, *args)
                costs[name].append(((seconds - plain) / n, (fault_count - plain_faults) / n))
            floors.append(floor(folder))
    base = statistics.median(seconds for seconds, _ in floors)
    base_faults = statistics.median(count for _, count in floors)
    # Where the time goes: every page a process writes after a fork faults once
    # (a copy in the child; in the parent, write access back). The floor's loop
    # writes few pages; a test session writes many between two forks.
    print(f"tests per session: {n} (x{rounds} rounds, medians)")
    floor_line = f"{base * 1e6:6.0f} us, {base_faults:5.0f} page faults"
    print(f"{'bare fork+pipe+waitpid (the floor):':34s} {floor_line}")
    for name, rows in costs.items():
        cost = statistics.median(seconds for seconds, _ in rows)
        count = statistics.median(faults for _, faults in rows)
        print(f"{name + ' per test:':34s} {cost * 1e6:6.0f} us, {count:5.0f} page faults"
              f" = {cost / base:.2f}x the floor")
    print("target for pytest-permission: <= 1.30x the floor")


if __name__ == "__main__":
    main()
