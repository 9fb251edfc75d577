"""What the tools running beside a restricted test need in its child: hypothesis, pytest's capture.

:func:`paths` runs in the pytest process before the fork (so the child
copies less), :func:`prepare` in the forked child before enforcement
starts. The paths are granted implicitly (even with ``implicit=False``) by
the audit layer and the kernel layer alike, and never show in ``has()``.
Coverage needs none: see :mod:`pytest_permission.coverage_relay`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

ITEM_STATE = (
    "hypothesis_statistics",
    "hypothesis_report_information",
    "_hypothesis_failing_examples",
)
"""Attributes a tool sets on the item during the call phase and reads when it makes
the teardown report (hypothesis's statistics, its report text and failing
examples). They are set in the child, so it sends them back; only text, or lists
of text, is taken."""


def item_state(item: object) -> dict[str, object]:
    """In the child: the :data:`ITEM_STATE` attributes the call phase set."""
    found = vars(item)
    return {name: found[name] for name in ITEM_STATE if name in found}


def restore_item_state(item: object, state: object) -> None:
    """In the parent: set what :func:`item_state` sent, if it is text or lists of text."""
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        text = isinstance(value, str)
        texts = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if name in ITEM_STATE and (text or texts):
            setattr(item, name, value)


def make_folders() -> None:
    """In the pytest process, before a restricted test: the tools' folders exist.

    Hypothesis makes ``.hypothesis/`` when it first saves an example; in a
    forked child that is a folder created in the project, which the kernel
    layer (rightly) lets no test do. Made here, the grant names a folder.
    """
    for folder in _hypothesis_paths()[:1]:
        with contextlib.suppress(OSError):
            os.makedirs(folder, exist_ok=True)


def paths() -> tuple[list[str], list[str]]:
    """The paths the tools need, as ``(read, write)`` grants; no side effect."""
    found = _hypothesis_paths()
    grants = [os.path.abspath(p) + "*" for p in found]  # "*": the folder, made yet or not
    return grants, grants


def prepare() -> Callable[[], None]:
    """Ready the tools for enforcement (patches what they use); returns how to undo it.

    A forked child never undoes; a test restricted in the pytest process does.
    """
    patches = [p for p in (_hypothesis_scratch(), _capture_in_memory()) if p is not None]

    def undo() -> None:
        for module, name, value in patches:
            setattr(module, name, value)

    return undo


Patch = tuple[object, str, object]
"""A module, an attribute, and what it held before."""


def _capture_in_memory() -> Patch | None:
    """pytest's file-descriptor capture made inside the body writes to memory files.

    Capturing a subtest's output (and ``capfd`` started in the body) makes
    ``tempfile.TemporaryFile()`` in the system temporary folder, which is no
    grant to give every test; an anonymous memory file (``memfd_create``)
    serves the same purpose and touches no file system. Linux only; elsewhere
    such a test needs ``fs_write`` on the temporary folder.
    """
    capture = sys.modules.get("_pytest.capture")
    if capture is None or not hasattr(os, "memfd_create"):
        return None

    def memory_file(*args: object, **kwargs: object) -> Any:
        fd = os.memfd_create("pytest-capture", os.MFD_CLOEXEC)
        return open(fd, "wb+", buffering=0)

    before = capture.TemporaryFile
    setattr(capture, "TemporaryFile", memory_file)  # noqa: B010
    return capture, "TemporaryFile", before


def _hypothesis_paths() -> list[str]:
    """Hypothesis's storage folder (``.hypothesis/``) and example database.

    A ``@given`` test reads and writes them while it runs.
    """
    configuration = sys.modules.get("hypothesis.configuration")
    if configuration is None:
        return []
    found = [_hypothesis_home(configuration)]
    database = sys.modules["hypothesis"].settings.default.database
    if isinstance(getattr(database, "path", None), (str, os.PathLike)):
        found.append(os.fspath(database.path))
    return found


def _hypothesis_home(configuration: Any) -> str:
    storage = configuration.storage_directory()
    home: str = os.fspath(getattr(storage, "home_directory", getattr(storage, "path", storage)))
    return home


def _hypothesis_scratch() -> Patch | None:
    """Keep the example database's temporary files inside the storage folder.

    Its directory database writes each example to ``tempfile.mkstemp()`` in
    the system temporary folder and renames it into place; that folder is no
    grant to give every test, so the temporary files go to the storage
    folder instead (which also keeps the rename on one file system).
    """
    configuration = sys.modules.get("hypothesis.configuration")
    module = sys.modules.get("hypothesis.database")
    if configuration is None or module is None or getattr(module, "tempfile", None) is not tempfile:
        return None
    scratch = os.path.join(_hypothesis_home(configuration), "tmp")

    def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        os.makedirs(scratch, exist_ok=True)
        kwargs.setdefault("dir", scratch)
        return tempfile.mkstemp(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

    setattr(module, "tempfile", SimpleNamespace(**{**vars(tempfile), "mkstemp": mkstemp}))  # noqa: B010
    return module, "tempfile", tempfile
