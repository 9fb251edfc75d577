"""Per-test cost of forked isolation, as a ratio to a bare fork floor.

Run: ``python benchmarks/bench_isolation.py [N] [ROUNDS]`` (defaults 300, 5).

In one run, interleaved ROUNDS times, it times three things in fresh
processes: a pytest session of N trivial tests without the marker, the same
N tests under ``@pytest.mark.permission()``, and, inside a pytest session
(so the process has the same size), N bare ``os.fork()`` + pipe + ``waitpid``
round trips. The isolation cost per test is (marked - plain) / N; the floor
is the bare round trip; the script prints medians and their ratio. The
machine is shared and noisy, so only ratios measured together mean anything.

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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        body = "".join(f"def test_{i}():\n    pass\n\n" for i in range(n))
        (folder / "test_plain.py").write_text(body)
        (folder / "test_marked.py").write_text(
            "import pytest\n\npytestmark = pytest.mark.permission()\n\n" + body
        )
        (folder / "test_floor.py").write_text(FLOOR_TEST.format(n=n))
        costs, floors, forked_costs = [], [], []
        faults, floor_faults, forked_faults = [], [], []
        for _ in range(rounds):
            plain, plain_faults = session(folder, "test_plain.py")
            marked, marked_faults = session(folder, "test_marked.py")
            costs.append((marked - plain) / n)
            faults.append((marked_faults - plain_faults) / n)
            if FORKED:
                forked, forked_fault_count = session(folder, "test_plain.py", "--forked")
                forked_costs.append((forked - plain) / n)
                forked_faults.append((forked_fault_count - plain_faults) / n)
            seconds, floor_fault_count = floor(folder)
            floors.append(seconds)
            floor_faults.append(floor_fault_count)
    cost, base = statistics.median(costs), statistics.median(floors)
    print(f"tests per session:         {n} (x{rounds} rounds, medians)")
    print(f"isolation cost per test:   {cost * 1e6:8.0f} us")
    print(f"bare fork+pipe+waitpid:    {base * 1e6:8.0f} us")
    print(f"ratio to the floor:        {cost / base:8.2f}x  (target <= 1.30x)")
    if forked_costs:
        other = statistics.median(forked_costs)
        print(f"pytest-forked per test:    {other * 1e6:8.0f} us = {other / base:.2f}x the floor")
    # Where the time goes: every page a process writes after a fork faults once
    # (a copy in the child; in the parent, write access back). The floor's loop
    # writes few pages; a test session writes many between two forks.
    print(f"page faults per test:      {statistics.median(faults):8.0f}"
          f"  (floor: {statistics.median(floor_faults):.0f} per round trip"
          + (f"; pytest-forked: {statistics.median(forked_faults):.0f})" if forked_faults else ")"))


if __name__ == "__main__":
    main()
