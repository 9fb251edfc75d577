"""Python subprocesses of a restricted test enforce the test's policy too.

The forked child puts the policy, as JSON, in the environment variable
:data:`VARIABLE` before it installs enforcement (in the C environment, out
of the test's view: see ``audit.env.INHERITED_POLICY``). Every Python interpreter
that starts with the variable set imports this module from
``pytest_permission_startup.pth`` (installed into site-packages with the
package; the ``.pth`` line costs one dictionary look-up when the variable is
absent) and calls :func:`enforce_inherited_policy`, which installs the
audit layer with that policy before any user code runs — as Node passes
``--permission`` to its children in ``NODE_OPTIONS``.
Each new process gets the policy as it is when it starts (after any
``drop()``): in its explicit ``env=`` mapping, or else in the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any

from pytest_permission import audit
from pytest_permission.audit.env import INHERITED_POLICY
from pytest_permission.audit.guard import Guard, Handler
from pytest_permission.policy import Policy

VARIABLE = INHERITED_POLICY.text

_ENV_ARGUMENT = {"subprocess.Popen": 3, "os.posix_spawn": 2, "os.exec": 2, "os.system": 1}
"""Audit events of process creation, and where their ``env`` argument is
(``os.system`` has none: its process inherits the C environment)."""


def encode(policy: Policy, implicit: bool) -> str:
    return json.dumps({"grants": policy.describe(), "implicit": implicit})


def decode(text: str) -> tuple[Policy, bool]:
    data = json.loads(text)
    return Policy.from_keywords(data["grants"]), bool(data["implicit"])


def export(text: str) -> None:
    """Before enforcement starts: pass the policy (:func:`encode`) to every future subprocess.

    Into the C environment only: the test's own view of the environment
    (``os.environ``) does not show it.
    """
    os.putenv(VARIABLE, text)


def propagate(guard: Guard) -> None:
    """Put the current policy into the ``env=`` mapping of each new process.

    Registered once, with the audit layer's other hooks (:func:`audit.arm`):
    it acts whenever the guard enforces and is not only observing.
    """

    def handler(index: int) -> Handler:
        def add_policy(args: tuple[Any, ...]) -> None:
            if guard.observe:
                return  # an audit enforces nothing, in subprocesses neither
            env = args[index] if len(args) > index else None
            text = encode(guard.policy, guard.implicit.enabled)
            if env is None:  # the process environment: the guard ignores its own putenv
                os.putenv(VARIABLE, text)
            elif isinstance(env, MutableMapping):
                key: str | bytes = VARIABLE
                if any(isinstance(k, bytes) for k in env):
                    key = os.fsencode(VARIABLE)
                env[key] = os.fsencode(text) if isinstance(key, bytes) else text

        return add_policy

    guard.register({event: handler(index) for event, index in _ENV_ARGUMENT.items()})


def enforce_inherited_policy() -> None:
    """At interpreter start (from the ``.pth`` file): enforce the policy passed down."""
    text = os.environ.get(VARIABLE)
    if not text or audit.active() is not None:
        return
    policy, implicit = decode(text)
    audit.install(policy, implicit=implicit)
