"""Shared test helpers.

``enforced`` runs a snippet in a fresh Python process under a policy, so an
irreversible installation never touches the test process, and returns what
each ``attempt(...)`` in the snippet observed.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import pytest_permission

pytest_plugins = ["pytester"]

for _module in pkgutil.walk_packages(pytest_permission.__path__, "pytest_permission."):
    # Every module of the plugin, imported before any in-process inner session:
    # pytester puts sys.modules back after each one, so a module first imported
    # inside one would be imported anew after it, a second copy beside the
    # objects the first left running (a supervisor thread, a kept kernel layer).
    importlib.import_module(_module.name)

PRELUDE = '''
import json, sys
from pytest_permission import AccessDenied, Policy, audit

def attempt(label, fn):
    """Try ``fn`` and print what happened as one JSON line."""
    try:
        value = fn()
    except AccessDenied as exc:
        out = {"denied": True, "permission": exc.permission, "resource": exc.resource,
               "code": exc.code}
    except BaseException as exc:
        out = {"denied": False, "error": type(exc).__name__, "message": str(exc)}
    else:
        out = {"denied": False, "value": repr(value)}
    print("@@" + json.dumps({label: out}), flush=True)

_config = json.loads(sys.argv[1])
# active already in a multiprocessing "spawn" child re-running this file: it
# inherited the policy (PYTEST_PERMISSION_POLICY) and enforces it from start-up
GUARD = audit.active() or audit.install(
    Policy.from_keywords(_config["grants"]), implicit=_config["implicit"]
)
'''


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, label: str) -> dict[str, Any]:
        assert label in self.results, f"no attempt {label!r}; stderr:\n{self.stderr}"
        return self.results[label]


Runner = Callable[..., Outcome]


@pytest.fixture
def enforced(tmp_path: Any) -> Runner:
    """Run ``code`` after ``audit.install(Policy.from_keywords(grants))`` in a new process."""

    def run(
        code: str,
        grants: Mapping[str, Any] | None = None,
        *,
        implicit: bool = True,
        setup: str = "",
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Outcome:
        script = textwrap.dedent(setup) + PRELUDE + textwrap.dedent(code)
        path = tmp_path / "snippet.py"
        path.write_text(script)
        config = json.dumps({"grants": dict(grants or {}), "implicit": implicit})
        proc = subprocess.run(
            [sys.executable, str(path), config],
            capture_output=True,
            text=True,
            cwd=str(tmp_path),
            env=dict(os.environ if env is None else env),
            timeout=timeout,
        )
        outcome = Outcome(proc.returncode, proc.stdout, proc.stderr)
        for line in proc.stdout.splitlines():
            if line.startswith("@@"):
                outcome.results.update(json.loads(line[2:]))
        return outcome

    return run
