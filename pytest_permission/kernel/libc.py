"""The two C functions the kernel layer calls: ``syscall(2)`` and ``prctl(2)``.

Both are looked up when this module is imported, in the pytest process,
before any enforcement. After the audit layer is installed, ``drop()`` still
has to narrow the kernel policy through ``syscall``; the audit layer's ctypes
guard lets that one function object through for the system calls listed in
:data:`NARROWING` only (see :data:`pytest_permission.audit.runtime.TRUSTED`).
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Any

from pytest_permission.audit import runtime

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446
"""Landlock's system calls: the same numbers on every architecture."""
SECCOMP = {"x86_64": 317, "aarch64": 277}
"""``seccomp(2)`` per architecture."""

MACHINE = os.uname().machine if struct.calcsize("P") == 8 else "32-bit"
"""The architecture this interpreter issues system calls for."""

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long]  # the rest are variadic: passed as c_long or pointers
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int

NARROWING = frozenset({CREATE_RULESET, ADD_RULE, RESTRICT_SELF, *SECCOMP.values()})
"""System calls that can only take rights away: a ruleset file descriptor,
a rule added to it, a Landlock layer, a stacked seccomp filter."""
runtime.TRUSTED[id(_syscall)] = (_syscall, NARROWING)


def syscall(number: int, *args: Any) -> int:
    """``syscall(number, *args)``; ``OSError`` from ``errno`` when it fails."""
    result = int(_syscall(number, *(_arg(a) for a in args)))
    if result < 0:
        raise _error()
    return result


def prctl(option: int, *args: int) -> int:
    """``prctl(option, *args)``; ``OSError`` from ``errno`` when it fails."""
    result = int(_prctl(ctypes.c_int(option), *(ctypes.c_ulong(a) for a in args)))
    if result < 0:
        raise _error()
    return result


Call = tuple[Any, tuple[Any, ...]]
"""A C function and its arguments, converted in the pytest process: the forked
child only calls it (:func:`pytest_permission.kernel.apply`), since converting
arguments there would write, and so copy, pages its parent shares with it."""


def syscall_call(number: int, *args: Any) -> Call:
    """``syscall(number, *args)``, made ready for the child."""
    return _syscall, tuple(_arg(a) for a in (number, *args))


def prctl_call(option: int, *args: int) -> Call:
    """``prctl(option, *args)``, made ready for the child."""
    return _prctl, (ctypes.c_int(option), *(ctypes.c_ulong(a) for a in args))


def _arg(value: Any) -> Any:
    """Integers as C longs: a variadic ``int`` would leave a register's upper half unset."""
    return ctypes.c_long(value) if isinstance(value, int) else value


def _error() -> OSError:
    number = ctypes.get_errno()
    return OSError(number, os.strerror(number))
