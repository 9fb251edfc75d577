"""Cost of the audit layer on hot paths, as ratios to the same loop unenforced.

Run: ``python benchmarks/bench_audit.py [OPENS] [IMPORTS] [ROUNDS]``
(defaults 20000, 400, 7).

Two loops, each timed inside a fresh process, once plain and once after
``audit.install(Policy.from_keywords({"fs_read": [folder]}))`` (every scope
module registered, as in a test), the two runs interleaved ROUNDS times:

* open/read: ``open(path, "rb")``, ``read()``, ``close()`` of a small file in
  the granted folder, OPENS times;
* import: importing IMPORTS small generated modules from the granted folder,
  a fresh set of names for every process, their bytecode compiled beforehand
  so that neither run writes a cache.

Each process measures its own CPU time (user + system, so waiting for a
shared CPU does not count) over five slices of its loop and keeps the
fastest slice.

It prints the median of the per-round ratios enforced/plain; the machine is
shared and noisy, so only ratios measured together mean anything. Target for
the open/read loop: <= 1.10x.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = """
import importlib, os, sys, time
mode, kind, n, folder, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, os.path.join(folder, "mods"))
if mode == "enforced":
    from pytest_permission import Policy, audit
    audit.install(Policy.from_keywords({"fs_read": [folder]}))
path = os.path.join(folder, "data.txt")
names = [f"m_{tag}_{i}" for i in range(n)]
best = float("inf")
for chunk in range(CHUNKS):  # best of CHUNKS: the least disturbed slice
    start = time.process_time()
    if kind == "open":
        for _ in range(n // CHUNKS):
            with open(path, "rb") as f:
                f.read()
    else:
        for name in names[chunk::CHUNKS]:
            importlib.import_module(name)
    best = min(best, time.process_time() - start)
print(best)
""".replace("CHUNKS", "5")


def timed(mode: str, kind: str, n: int, folder: Path, tag: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, mode, kind, str(n), str(folder), tag],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout)


def make_modules(folder: Path, tag: str, n: int) -> None:
    """``n`` small modules named for one round, compiled ahead of time."""
    mods = folder / "mods"
    for i in range(n):
        (mods / f"m_{tag}_{i}.py").write_text(f"VALUE = {i}\n\ndef f(x):\n    return x + VALUE\n")
    compileall.compile_dir(str(mods), quiet=1)


def ratios(kind: str, n: int, rounds: int, folder: Path) -> list[float]:
    out = []
    for r in range(rounds):
        if kind == "import":
            for mode in ("plain", "enforced"):
                make_modules(folder, f"{r}{mode}", n)
        # Alternate which run goes first, so drift favours neither.
        order = ("plain", "enforced") if r % 2 == 0 else ("enforced", "plain")
        times = {mode: timed(mode, kind, n, folder, f"{r}{mode}") for mode in order}
        out.append(times["enforced"] / times["plain"])
    return out


def main() -> None:
    opens = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    imports = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.txt").write_bytes(b"x" * 256)
        (folder / "mods").mkdir()
        open_ratios = ratios("open", opens, rounds, folder)
        import_ratios = ratios("import", imports, rounds, folder)
    print(f"rounds (interleaved):      {rounds}")
    print(
        f"open/read loop ({opens} x): {statistics.median(open_ratios):6.3f}x"
        f"  (min {min(open_ratios):.3f}, max {max(open_ratios):.3f}; target <= 1.10x)"
    )
    print(
        f"import loop ({imports} x):   {statistics.median(import_ratios):6.3f}x"
        f"  (min {min(import_ratios):.3f}, max {max(import_ratios):.3f})"
    )


if __name__ == "__main__":
    main()
