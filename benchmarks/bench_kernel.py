"""The kernel layer's cost, as ratios of kernel on to kernel off measured in one run.

Run: ``python benchmarks/bench_kernel.py [N_TESTS] [N_CALLS] [ROUNDS]``
(defaults 400, 2000, 3).

1. **Per restricted test** (the target: within 5 % of ``--permission-kernel=off``):
   one pytest session of N_TESTS trivial restricted tests per marker, where
   every other test runs with the kernel layer off (``kernel.prepare`` made
   to return nothing for it), so both halves share the session, the heap and
   the machine's load. Each test's whole run (setup; the call: preparing,
   forking, applying the layers, the body, the report; teardown, where the
   child is reaped) is timed in the pytest process only: wall time, and CPU
   time of the pytest process and its reaped children.
   Three markers: none granted (Landlock and seccomp alone), a write grant
   (a supervisor thread serves ``chmod`` and the like), a host grant (the
   supervisor decides sockets by address).
2. **What the supervisor costs per call**, in one restricted test: N_CALLS
   opens of a file granted before it exists (each open goes to the
   supervisor) against the same opens with the folder granted (Landlock
   alone); N_CALLS connections to a granted host (each ``connect`` goes to
   the supervisor), kernel on against off.
3. **An open/read loop**, kernel on against off (the audit layer in force
   in both), and where its cost goes in bare processes: seccomp alone,
   Landlock alone, Landlock not handling the truncate right, both.

The machine is shared and noisy, so only ratios measured together mean
anything; the script prints medians over ROUNDS sessions.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TIMING = '''
import json, os, resource, time
import pytest
from pytest_permission import kernel

_prepare = kernel.prepare
OUT = open(os.environ["BENCH_OUT"], "a")

def prepare(plan, **kwargs):
    """Every other test (by its number) runs with the kernel layer off."""
    return None if os.environ["BENCH_TEST"].endswith("_off") else _prepare(plan, **kwargs)

kernel.prepare = prepare

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """The whole test, in the pytest process: setup, the forked call, teardown
    (where the child is reaped, so its CPU time is counted)."""
    os.environ["BENCH_TEST"] = item.name
    before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), \\
        resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        return (yield)
    finally:
        after = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), \\
            resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
                  for a, b in zip(before[1:], after[1:]))
        mode = "off" if item.name.endswith("_off") else "on"
        OUT.write(json.dumps([item.name.split("_")[1], mode, after[0] - before[0], cpu]) + "\\n")
        OUT.flush()
'''

MARKERS = {
    "none": "@pytest.mark.permission()",
    "write": '@pytest.mark.permission(fs_read=["{tmp_path}"], fs_write=["{tmp_path}"])',
    "host": '@pytest.mark.permission(net=["127.0.0.1"])',
}


def per_test_module(tests: int) -> str:
    """N trivial tests per marker, on and off alternating."""
    body = ["import pytest\n"]
    for kind, marker in MARKERS.items():
        for i in range(tests):
            mode = "off" if i % 2 else "on"
            body.append(f"{marker}\ndef test_{kind}_{i}_{mode}(tmp_path):\n    pass\n")
    return "\n".join(body)


CALLS = '''
import os, socket, time
import pytest

@pytest.fixture
def folder(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path / "out"

def opens(path, n):
    """Open for appending and close (no data: truncating and writing cost the file
    system far more than the checks cost)."""
    start = time.perf_counter()
    for _ in range(n):
        with open(path, "a"):
            pass
    return (time.perf_counter() - start) / n

@pytest.mark.permission(fs_read=["{{tmp_path}}/out/report"], fs_write=["{{tmp_path}}/out/report"])
def test_opens_supervised(folder):
    print("CALL opens-supervised", opens(folder / "report", {n}))

@pytest.mark.permission(fs_read=["{{tmp_path}}/out"], fs_write=["{{tmp_path}}/out"])
def test_opens_landlock(folder):
    print("CALL opens-landlock", opens(folder / "report", {n}))

@pytest.fixture
def server():
    with socket.create_server(("127.0.0.1", 0), backlog=4096) as listening:
        yield listening

@pytest.mark.permission(net=["127.0.0.1"])
def test_connects(server):
    address = server.getsockname()
    start = time.perf_counter()
    for _ in range({n}):
        socket.create_connection(address).close()
        server.accept()[0].close()
    print("CALL connects", (time.perf_counter() - start) / {n})
'''

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
    print("CALL open-read", (time.perf_counter() - start) / {n})
'''

PARTS_LOOP = '''
import os, sys, time
from pytest_permission.kernel import landlock, libc, seccomp

variant, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if variant != "none":
    libc.prctl(seccomp.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
if variant in ("seccomp", "both"):
    denied = seccomp.Denied(child=True, worker=True, net=True, meta="deny")
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


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}  # this checkout


def pytest_run(folder: Path, *args: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args],
        cwd=folder, check=True, capture_output=True, text=True, env=environment(**env),
    )
    return done.stdout


def calls(output: str) -> dict[str, float]:
    found = {}
    for line in output.splitlines():
        if "CALL " in line:  # after pytest's progress dots
            name, seconds = line.split("CALL ", 1)[1].split()
            found[name] = float(seconds)
    return found


def part(data: Path, variant: str, opens: int) -> float:
    """Seconds per open/read/close in a fresh process under one :data:`PARTS` variant."""
    out = subprocess.run(
        [sys.executable, "-c", PARTS_LOOP, variant, str(data), str(opens)],
        check=True, capture_output=True, text=True, env=environment(),
    )
    return float(out.stdout)


def main() -> None:
    tests = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(TIMING)
        (folder / "test_per_test.py").write_text(per_test_module(tests))
        (folder / "test_calls.py").write_text(CALLS.format(n=n))
        (folder / "test_loop.py").write_text(LOOP_TEST.format(n=n))
        data = folder / "a" / "b" / "c" / "data"  # as deep as pytest's tmp_path
        data.parent.mkdir(parents=True)
        data.write_bytes(b"x" * 512)
        rows: list[list[object]] = []
        found: dict[str, list[float]] = {}
        bare: dict[str, list[float]] = {variant: [] for variant in PARTS}
        for _ in range(rounds):
            out = folder / "timings.jsonl"
            out.unlink(missing_ok=True)
            pytest_run(folder, "test_per_test.py", BENCH_OUT=str(out), BENCH_TEST="")
            rows += [json.loads(line) for line in out.read_text().splitlines()]
            for mode in ("auto", "off"):
                for module in ("test_calls.py", "test_loop.py"):
                    result = calls(pytest_run(
                        folder, module, f"--permission-kernel={mode}",
                        BENCH_OUT=os.devnull, BENCH_TEST="",
                    ))
                    for name, seconds in result.items():
                        found.setdefault(f"{name} {mode}", []).append(seconds)
            for variant in PARTS:
                bare[variant].append(part(data, variant, n))
    report(rows, found, bare, tests, n, rounds)


def report(
    rows: list[list[object]], found: dict[str, list[float]], bare: dict[str, list[float]],
    tests: int, n: int, rounds: int,
) -> None:
    print(f"per restricted test: {tests} tests per marker, half with the kernel layer off, "
          f"{rounds} sessions (medians of each test's whole run)")
    for kind in MARKERS:
        for measure, column in (("wall", 2), ("cpu", 3)):
            on, off = (
                statistics.median(float(r[column]) for r in rows if r[0] == kind and r[1] == mode)  # type: ignore[arg-type]
                for mode in ("on", "off")
            )
            print(f"  {kind:6s} {measure:4s}  off {off * 1e6:7.0f} us  on {on * 1e6:7.0f} us"
                  f"  ratio {on / off:.3f}x")
    print("  (target: 'none' within 1.05x)")
    median = {name: statistics.median(values) for name, values in found.items()}
    print(f"the supervisor per call ({n} calls, medians of {rounds} sessions)")
    print(f"  open, file granted before it exists (supervisor): "
          f"{median['opens-supervised auto'] * 1e6:6.1f} us; folder granted (Landlock): "
          f"{median['opens-landlock auto'] * 1e6:6.1f} us; kernel off: "
          f"{median['opens-supervised off'] * 1e6:6.1f} us")
    print(f"  connect + accept to a granted host: kernel on "
          f"{median['connects auto'] * 1e6:6.1f} us, off {median['connects off'] * 1e6:6.1f} us")
    on, off = median["open-read auto"], median["open-read off"]
    print(f"open/read loop: kernel off {off * 1e6:5.2f} us/open, on {on * 1e6:5.2f} us/open,"
          f" ratio {on / off:.3f}x")
    base = statistics.median(bare["none"])
    print(f"where the loop's cost goes (bare loops, no audit layer: {base * 1e6:.2f} us/open)")
    for variant in PARTS[1:]:
        added = statistics.median(bare[variant]) - base
        print(f"  {variant:22s} adds {added * 1e6:5.2f} us/open")


if __name__ == "__main__":
    main()
