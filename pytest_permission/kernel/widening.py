"""Where the kernel layer will allow more than a grant, said at collection.

The kernel layer is as narrow as the grants almost everywhere; where it
cannot be (a wildcard host; see :func:`pytest_permission.kernel.widenings`),
the test gets a
:class:`KernelWarning` when it is collected, naming the grant and what
the kernel will allow, so no widening is ever silent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pytest_permission import kernel, marker
from pytest_permission.options import Session


class KernelWarning(pytest.PytestWarning):
    """The kernel layer will allow more than a grant of the test says."""


def active(session: Session) -> bool:
    """Whether the kernel layer will apply to restricted tests of ``session``."""
    return session.kernel != "off" and not session.observe and bool(kernel.support().layers())


def warn(item: pytest.Item, mark: pytest.Mark, session: Session) -> None:
    """At collection: a :class:`KernelWarning` per widening of ``item``'s marker."""
    if not active(session):
        return
    dummy = Path(tempfile.gettempdir())  # placeholders: as the marker's check expands them
    settings = marker.settings_for(
        mark, session=session.policy, rootdir=dummy, testdir=dummy, tmp_path=dummy
    )
    for text in kernel.widenings(settings.policy):
        item.warn(KernelWarning(f"{item.nodeid}: {text}"))


def warn_session(config: pytest.Config, session: Session) -> None:
    """At configure, under ``--permission``: the widenings of the session's own grants."""
    if not session.enforce or not active(session):
        return
    for text in kernel.widenings(session.policy):
        config.issue_config_time_warning(KernelWarning(f"--permission: {text}"), stacklevel=2)
