"""``has()``/``drop()`` conformance: our Policy and real Node 26 answer the same table.

Every row of :mod:`conformance_table` is asserted against
``Policy.from_node_args(...).dropped(...).has(...)``, and, when a Node 26
binary is found (``PYTEST_PERMISSION_NODE``, else ``node`` on ``PATH``),
against ``node --permission <flags> -e <script>``, run once per grant set
with all its queries batched. Only the pinned release (``NODE_RELEASE``)
counts: another Node is skipped (failed when ``PYTEST_PERMISSION_NODE``
names it), since the table says what that release answers. The divergences
(Node's radix-tree quirks, where we keep the documented rule) are asserted
on both sides too, each with its own expected answer, so a change in Node
shows up when the pin moves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conformance_table import CASES, DIVERGENCES, LAYOUT, NODE_RELEASE, Case, Divergence

from pytest_permission import Policy

NODE_VERSION = "v" + NODE_RELEASE
Query = tuple[str, str | None]
GrantSet = tuple[tuple[str, ...], tuple[Query, ...]]

NODE_SCRIPT = """
const [drops, queries] = JSON.parse(process.argv[1]);
for (const [scope, ref] of drops) {
  if (ref === null) process.permission.drop(scope); else process.permission.drop(scope, ref);
}
const has = ([scope, ref]) =>
  ref === null ? process.permission.has(scope) : process.permission.has(scope, ref);
process.stdout.write(JSON.stringify(queries.map(has)));
"""


def find_node() -> tuple[str | None, str]:
    """The pinned Node binary to compare with, or None and why not."""
    configured = os.environ.get("PYTEST_PERMISSION_NODE")
    candidate = configured or shutil.which("node")
    if candidate is None:
        return None, "no Node.js: set PYTEST_PERMISSION_NODE or put node 26 on PATH"
    try:
        version = subprocess.run(
            [candidate, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{candidate} --version failed: {exc}"
    if version != NODE_VERSION:
        return None, f"{candidate} is Node {version}; the reference is Node {NODE_VERSION}"
    return candidate, version


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``{tmp}`` folder, laid out as LAYOUT (a real path: no link in it)."""
    base = Path(os.path.realpath(tmp_path_factory.mktemp("conformance")))
    for entry in LAYOUT:
        target = base / entry
        if entry.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("x")
    return base


@pytest.fixture
def in_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Relative rows mean the same for us as for Node, which runs in ``root``."""
    monkeypatch.chdir(root)
    yield root


def fill(text: str | None, root: Path) -> str | None:
    return None if text is None else text.replace("{tmp}", str(root))


def grant_sets() -> dict[GrantSet, list[Query]]:
    """Every distinct (flags, drops) with all the queries asked under it."""
    sets: dict[GrantSet, list[Query]] = {}
    for case in CASES:
        sets.setdefault((case.args, case.drops), []).extend((s, r) for s, r, _ in case.checks)
    for div in DIVERGENCES:
        sets.setdefault((div.args, div.drops), []).extend((s, r) for s, r, _, _ in div.checks)
    return sets


def run_node(node: str, root: Path, grant_set: GrantSet, queries: list[Query]) -> dict[Query, bool]:
    args, drops = grant_set
    payload = json.dumps(
        [[[s, fill(r, root)] for s, r in drops], [[s, fill(r, root)] for s, r in queries]]
    )
    flags = [fill(a, root) or "" for a in args]
    proc = subprocess.run(
        [node, "--permission", *flags, "-e", NODE_SCRIPT, payload],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert proc.returncode == 0, f"node {flags} failed:\n{proc.stderr}"
    return dict(zip(queries, json.loads(proc.stdout), strict=True))


@pytest.fixture(scope="session")
def node_answers(root: Path) -> dict[GrantSet, dict[Query, bool]]:
    """Node's answer to every query of the table, one process per grant set."""
    node, why = find_node()
    if node is None:
        if os.environ.get("PYTEST_PERMISSION_NODE"):
            pytest.fail(f"PYTEST_PERMISSION_NODE is set but unusable: {why}")
        pytest.skip(why)
    sets = grant_sets()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda item: run_node(node, root, *item), sets.items())
        return dict(zip(sets, answers, strict=True))


def ours(case: Case | Divergence, root: Path) -> Policy:
    policy = Policy.from_node_args([fill(a, root) or "" for a in case.args])
    for scope, resource in case.drops:
        policy = policy.dropped(scope, fill(resource, root))
    return policy


def mismatches(rows: list[tuple[str, str | None, bool, bool]]) -> list[str]:
    return [
        f"has({s!r}, {r!r}): expected {want}, got {got}" for s, r, want, got in rows if want != got
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_matches_table(case: Case, in_root: Path) -> None:
    policy = ours(case, in_root)
    rows = [(s, r, want, policy.has(s, fill(r, in_root))) for s, r, want in case.checks]
    assert mismatches(rows) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_matches_table(
    case: Case, root: Path, node_answers: dict[GrantSet, dict[Query, bool]]
) -> None:
    answers = node_answers[(case.args, case.drops)]
    rows = [(s, r, want, answers[(s, r)]) for s, r, want in case.checks]
    assert mismatches(rows) == []


@pytest.mark.parametrize("div", DIVERGENCES, ids=[d.name for d in DIVERGENCES])
def test_divergence_policy_follows_documented_rule(div: Divergence, in_root: Path) -> None:
    policy = ours(div, in_root)
    rows = [(s, r, want, policy.has(s, fill(r, in_root))) for s, r, want, _ in div.checks]
    assert mismatches(rows) == []


@pytest.mark.parametrize("div", DIVERGENCES, ids=[d.name for d in DIVERGENCES])
def test_divergence_node_still_quirky(
    div: Divergence, node_answers: dict[GrantSet, dict[Query, bool]]
) -> None:
    answers = node_answers[(div.args, div.drops)]
    rows = [(s, r, node, answers[(s, r)]) for s, r, _, node in div.checks]
    assert mismatches(rows) == [], "Node changed: move this row from DIVERGENCES to CASES"


@pytest.mark.parametrize("call", ["has", "dropped"])
def test_unknown_scope_raises_where_node_answers_false(call: str) -> None:
    """Divergence by design: a typo in a scope name must not pass silently."""
    policy = Policy.from_node_args(["--allow-fs-read=*"])
    with pytest.raises(ValueError, match=r"unknown permission scope 'fs\.raed'"):
        getattr(policy, call)("fs.raed")
