"""The kernel layer's added cost, as ratios of kernel on to kernel off.

Run: ``python benchmarks/bench_kernel.py [N_OPENS] [N_TESTS] [ROUNDS]``
(defaults 20000, 300, 5).

In one run, interleaved ROUNDS times, fresh pytest sessions of this
checkout time, with ``--permission-kernel=auto`` and ``=off``:

* an open/read loop: one restricted test opening, reading and closing a
  granted file N_OPENS times (the audit layer is in force in both runs, so
  the ratio is what Landlock and seccomp add to each ``open``);
* per-test isolation: N_TESTS trivial restricted tests, minus the same tests
  unmarked; the ratio is the isolation cost with the kernel layer over the
  cost without (forking, applying the layers, reporting back);
* where the loop's cost goes: the same loop in bare Python processes (no
  pytest, no audit layer) under seccomp alone, Landlock alone, Landlock not
  handling the truncate right, and both: what each part adds per open.

The machine is shared and noisy, so only ratios measured together mean
anything; the script prints medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOOP_TEST = '''
import time
import pytest

@pytest.fixture
def data(tmp_path):
    (tmp_path / "data").write_bytes(b"x" * 512)
    return tmp_path / "data"

@pytest.mark.permission(fs_read=["{{tmp_path}}"])
def test_open_read(data):
    start = time.perf_counter()
    for _ in range({n}):
        with open(data, "rb") as f:
            f.read()
    print("LOOP", time.perf_counter() - start)
'''


PARTS_LOOP = '''
import os, sys, time
from pytest_permission.kernel import landlock, libc, seccomp

variant, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if variant != "none":
    libc.prctl(seccomp.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
if variant in ("seccomp", "both"):
    denied = seccomp.Denied(child=True, worker=True, net=True)
    seccomp.Filter(seccomp.program(seccomp.ARCHES[libc.MACHINE], denied)).install()
if variant.startswith("landlock") or variant == "both":
    if variant == "landlock-no-truncate":
        handled = landlock.handled_fs
        landlock.handled_fs = lambda version: handled(version) & ~landlock.TRUNCATE
    layer = landlock.Landlock(landlock.abi())
    layer.restrict(landlock.Rules({os.path.dirname(data): landlock.READ}, None))
start = time.perf_counter()
for _ in range(n):
    with open(data, "rb") as f:
        f.read()
print((time.perf_counter() - start) / n)
'''
PARTS = ("none", "seccomp", "landlock", "landlock-no-truncate", "both")
"""Bare loops (no pytest, no audit layer): what each part of the kernel layer adds."""


def part(data: Path, variant: str, opens: int) -> float:
    """Seconds per open/read/close in a fresh process under one :data:`PARTS` variant."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", PARTS_LOOP, variant, str(data), str(opens)],
        check=True, capture_output=True, text=True, env=env,
    )
    return float(out.stdout)


def pytest_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever is installed
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, check=True, capture_output=True, text=True, env=env,
    )


def loop(folder: Path, mode: str) -> float:
    out = pytest_run(folder, "-s", "test_loop.py", f"--permission-kernel={mode}")
    return float(next(line.split()[1] for line in out.stdout.splitlines() if "LOOP" in line))


def session(folder: Path, name: str, mode: str) -> float:
    start = time.perf_counter()
    pytest_run(folder, name, f"--permission-kernel={mode}")
    return time.perf_counter() - start


def main() -> None:
    opens = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    tests = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_loop.py").write_text(LOOP_TEST.format(n=opens))
        body = "".join(f"def test_{i}():\n    pass\n\n" for i in range(tests))
        (folder / "test_plain.py").write_text(body)
        (folder / "test_marked.py").write_text(
            "import pytest\n\npytestmark = pytest.mark.permission()\n\n" + body
        )
        data = folder / "a" / "b" / "c" / "data"  # as deep as pytest's tmp_path
        data.parent.mkdir(parents=True)
        data.write_bytes(b"x" * 512)
        loops: dict[str, list[float]] = {"auto": [], "off": []}
        costs: dict[str, list[float]] = {"auto": [], "off": []}
        bare: dict[str, list[float]] = {variant: [] for variant in PARTS}
        for _ in range(rounds):
            plain = session(folder, "test_plain.py", "off")
            for mode in ("auto", "off"):
                loops[mode].append(loop(folder, mode))
                costs[mode].append((session(folder, "test_marked.py", mode) - plain) / tests)
            for variant in PARTS:
                bare[variant].append(part(data, variant, opens))
    on, off = (statistics.median(loops[m]) for m in ("auto", "off"))
    print(f"open/read loop, {opens} opens ({rounds} rounds, medians)")
    print(f"  kernel off: {off / opens * 1e6:7.2f} us/open   on: {on / opens * 1e6:7.2f} us/open")
    print(f"  ratio on/off: {on / off:.3f}x  (target <= 1.05x)")
    on, off = (statistics.median(costs[m]) for m in ("auto", "off"))
    print(f"per-test isolation, {tests} tests")
    print(f"  kernel off: {off * 1e6:7.0f} us/test   on: {on * 1e6:7.0f} us/test")
    print(f"  ratio on/off: {on / off:.3f}x")
    base = statistics.median(bare["none"])
    print(f"where the loop's cost goes (bare loops, no audit layer: {base * 1e6:.2f} us/open)")
    for variant in PARTS[1:]:
        added = statistics.median(bare[variant]) - base
        print(f"  {variant:22s} adds {added * 1e6:5.2f} us/open")


if __name__ == "__main__":
    main()
