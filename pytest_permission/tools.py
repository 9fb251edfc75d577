"""What the tools running beside a restricted test need in its child.

:func:`prepare` runs in the forked child before enforcement starts; the
paths it returns are granted implicitly (even with ``implicit=False``) by
the audit layer and the kernel layer alike, and never show in ``has()``.
Coverage needs none: see :mod:`pytest_permission.coverage_relay`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import SimpleNamespace


def prepare() -> tuple[list[str], list[str]]:
    """Ready the tools for enforcement; the paths they need, as ``(read, write)``."""
    found = _hypothesis()
    grants = [os.path.abspath(p) + "*" for p in found]  # "*": the folder, made yet or not
    return grants, grants


def _hypothesis() -> list[str]:
    """Hypothesis's storage folder (``.hypothesis/``) and example database.

    A ``@given`` test reads and writes them while it runs. Its directory
    database writes each example to ``tempfile.mkstemp()`` in the system
    temporary folder and renames it into place; that folder is no grant to
    give every test, so the database's temporary files go to the storage
    folder instead (which also keeps the rename on one file system).
    """
    configuration = sys.modules.get("hypothesis.configuration")
    if configuration is None:
        return []
    storage = configuration.storage_directory()
    home = os.fspath(getattr(storage, "home_directory", getattr(storage, "path", storage)))
    found = [home]
    database = sys.modules["hypothesis"].settings.default.database
    if isinstance(getattr(database, "path", None), (str, os.PathLike)):
        found.append(os.fspath(database.path))
    module = sys.modules.get("hypothesis.database")
    if module is not None and getattr(module, "tempfile", None) is tempfile:
        scratch = os.path.join(home, "tmp")

        def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
            os.makedirs(scratch, exist_ok=True)
            kwargs.setdefault("dir", scratch)
            return tempfile.mkstemp(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

        setattr(module, "tempfile", SimpleNamespace(**{**vars(tempfile), "mkstemp": mkstemp}))  # noqa: B010
    return found
