"""The kernel layer (Linux): the test's policy applied by Landlock, seccomp and a supervisor.

The audit layer sees what Python code asks for; C code, ``ctypes``, private
modules and the child processes a test may start get around it. In the
forked child, before the audit layer is installed and before any thread
starts, :func:`apply` asks the kernel to enforce the same policy, for the
rest of the process's life and for every process it starts:

* Landlock (:mod:`.landlock`, :mod:`.mapping`): the ``fs_read``/``fs_write``
  grants and the implicit grants, and TCP ports where ``net`` names ports
  or nothing;
* seccomp (:mod:`.seccomp`): ``child``, ``worker``, sockets by family, no
  ``io_uring``; and what only memory tells apart goes to
* the supervisor (:mod:`.supervisor`), a thread of the pytest process:
  ``net`` by address and port, ``chmod``/``chown``/``utime``/xattr writes
  inside the write grants, and write grants on single files, missing paths
  and wildcards, exactly.

The rule: never wider than the marker and the implicit grants, and never
narrower where a test's honest use needs it. What the kernel can only
widen is named at collection (:func:`widenings`). The kernel gives no
``AccessDenied``, only ``EACCES``/``EPERM``: the audit layer stays in front
with its precise errors, the kernel layer behind it stops what got past.
:func:`follow` makes every ``drop()`` narrow it too.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_permission import scopes
from pytest_permission.plan import Plan
from pytest_permission.policy import Policy

if TYPE_CHECKING:
    from pytest_permission.audit.guard import Guard
    from pytest_permission.kernel.layer import Layer, Step
    from pytest_permission.kernel.supervisor import Supervisor

__all__ = [
    "KernelError", "Prepared", "Support", "apply", "describe", "explain",
    "follow", "prepare", "start", "support", "widenings",
]


class KernelError(RuntimeError):
    """The kernel refused to apply or narrow the layer."""


@dataclass(frozen=True)
class Support:
    """What the running kernel offers."""

    landlock: int
    """Landlock's ABI version; 0 without Landlock."""
    seccomp: bool
    """seccomp filters with user notification (the supervisor)."""
    missing: tuple[str, ...]
    """Why a layer is unavailable, one sentence each."""

    def layers(self) -> list[str]:
        """The names of the layers :func:`apply` would add, as the header shows them."""
        names = [f"landlock ABI {self.landlock}"] if self.landlock else []
        return names + (["seccomp", "supervisor"] if self.seccomp else [])


@functools.cache
def support() -> Support:
    """What the running kernel offers; asked once, in the pytest process."""
    if not sys.platform.startswith("linux"):
        return Support(0, False, (f"the kernel layer needs Linux, not {sys.platform}",))
    from pytest_permission.kernel import landlock, seccomp

    version = landlock.abi()
    missing = [] if version else ["Landlock: not in this kernel or not enabled (lsm=landlock)"]
    why = seccomp.supported()
    return Support(version, why is None, (*missing, *([why] if why else [])))


def describe(mode: str) -> str:
    """The layers in force for ``--permission-kernel=mode``, for the terminal header."""
    if mode == "off":
        return "audit (kernel layer off)"
    offered = support()
    names = ", ".join(["audit", *offered.layers()])
    return names + (f" (unavailable: {'; '.join(offered.missing)})" if offered.missing else "")


def widenings(policy: Policy) -> list[str]:
    """What the kernel layer will allow beyond the grants of ``policy``, one sentence each.

    Empty for almost every policy: the kernel layer is as narrow as the
    grants. Said at collection, so no widening is ever silent. (What the
    plugin itself reads to report, the Python installation and the test
    file, stays readable even with ``implicit=False``, as the tools' folders
    do in the audit layer: the README says so, no test repeats it.)
    """
    found = []
    for rule in policy.grant(scopes.NET).rules:
        if rule.wildcard:
            ports = "every port" if rule.port is None else f"port {rule.port}"
            found.append(
                f"net grant {rule.text!r}: the kernel sees addresses, not names, so C code "
                f"and child programs may reach {ports} of any address"
            )
    return found


_active: Layer | None = None


@dataclass(frozen=True)
class Prepared:
    """The kernel layer of one test, made in the pytest process before the fork.

    Rules, the Landlock ruleset and the BPF program are built there (or
    taken from the cache of earlier tests), so the child only makes the
    system calls that restrict it: everything it computes, it pays for
    again in copied pages.
    """

    kernel: Layer
    step: Step
    ruleset: int | None
    """The Landlock ruleset descriptor, ready for ``landlock_restrict_self``."""
    supervisor: Supervisor | None
    """Serves the calls the filter hands over; ``None`` where none are."""
    calls: tuple[tuple[object, tuple[object, ...]], ...] = ()
    """The system calls :func:`apply` makes, arguments ready, where the child has
    nothing else to do (no supervisor, no rule on its own ``/proc/self``)."""
    strays: tuple[tuple[int, str], ...] = ()
    """Descriptors of supervisors still serving earlier tests' processes: the child
    closes them, so no test can answer for another's."""

    def close(self) -> None:
        """In the pytest process after the fork: close its copy of a ruleset made for
        this test alone, and leave the channel to the supervisor to the child (the
        supervisor's thread ends by itself when no process under the filter is left)."""
        from pytest_permission.kernel import landlock

        landlock.release(self.ruleset)
        if self.supervisor is not None:
            self.supervisor.forked()


def start(mode: str) -> None:
    """Open what every test's kernel layer reuses, once, when the session starts.

    Descriptors on the implicit grants' folders, one for the last ruleset
    built, an inotify watch on the code folders: made before collection,
    they are the pytest process's whole share of descriptors however many
    tests run. Without this call they are made at the first restricted test.
    """
    if mode == "off" or not support().landlock:
        return
    from pytest_permission.kernel import landlock, mapping

    landlock.keep(mapping.static_paths())
    landlock.reserve()
    mapping.watch()


def prepare(
    plan: Plan, *, read: Sequence[str] = (), write: Sequence[str] = ()
) -> Prepared | None:
    """What :func:`apply` will enforce for ``plan``; ``None`` where nothing applies.

    ``read``/``write`` are grants (paths, ``*`` prefixes naming a folder) for
    what the plugin and the tools beside the test use on its behalf,
    whatever the policy.
    """
    if plan.kernel == "off":
        return None
    offered = support()
    if plan.kernel == "require" and offered.missing:
        raise KernelError("the kernel layer is required but " + "; ".join(offered.missing))
    if not offered.layers():
        return None
    from pytest_permission.kernel import reuse
    from pytest_permission.kernel.layer import Layer

    again = reuse.last()
    if again is not None and again.fits(plan, read, write):
        return again.prepared
    kernel = Layer(offered, plan.policy, plan.implicit, read, write)
    step = kernel.step(plan.policy)
    landlock = kernel.landlock
    try:
        ruleset = None
        if landlock is not None and step.rules is not None:
            ruleset = landlock.ruleset(step.rules, keep=True)
    except OSError as exc:
        raise KernelError(f"the kernel layer could not be prepared: {exc}") from exc
    supervisor = None
    if step.denied is not None and step.denied.supervised:
        supervisor = kernel.supervisor(plan.policy, step, read, write)
        supervisor.start()
    from pytest_permission.kernel.supervisor import strays

    prepared = Prepared(
        kernel, step, ruleset, supervisor, kernel.calls(step, ruleset, supervisor), strays()
    )
    reuse.keep(prepared, plan, read, write)
    return prepared


def apply(prepared: Prepared | None) -> list[str]:
    """Enforce a prepared kernel layer from now on; the names of the layers added.

    Call it in the child, before the audit layer and before any thread:
    Landlock restricts the calling thread and what it starts. Usually it only
    makes the calls made ready in the pytest process: in a forked child,
    every object touched is a page copied.
    """
    global _active
    if prepared is None:
        return []
    kernel = prepared.kernel
    if prepared.strays:
        from pytest_permission.kernel.supervisor import close_strays

        close_strays(prepared.strays)
    if prepared.calls:
        result = 0
        for function, args in prepared.calls:
            result = function(*args)  # type: ignore[operator]
            if result < 0:
                import ctypes

                number = ctypes.get_errno()
                raise KernelError(
                    f"the kernel layer could not be applied: [Errno {number}] "
                    f"{os.strerror(number)}"
                )
        if prepared.supervisor is not None:  # the last call made the filter's listener
            kernel.hand_over(prepared.supervisor, result)
        kernel.settle(prepared)
    else:
        from pytest_permission.kernel import libc, seccomp

        try:
            libc.prctl(seccomp.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            kernel.take(prepared.step, prepared.ruleset, prepared.supervisor)
        except OSError as exc:
            raise KernelError(f"the kernel layer could not be applied: {exc}") from exc
    _active = kernel
    return kernel.offered.layers()


def follow(guard: Guard) -> None:
    """Narrow the kernel layer whenever ``guard.drop()`` narrows the audit layer.

    Also let the audit layer raise ``AccessDenied`` for a socket the seccomp
    filter would refuse with a bare ``EPERM`` (a UDP socket with ``net``
    denied, say): its resource names the kind of socket, as no address is
    known yet.
    """
    kernel = _active
    if kernel is None:
        return
    from pytest_permission.kernel import seccomp

    def on_socket(args: tuple[object, ...]) -> None:
        _, family, kind, protocol = args
        denied = kernel.denied
        if (
            denied is not None
            and isinstance(family, int) and isinstance(kind, int) and isinstance(protocol, int)
            and seccomp.refuses_socket(denied, family, kind, protocol)
        ):
            guard.deny(scopes.NET, _socket_kind(family, kind))

    guard.register({"socket.__new__": on_socket})

    def narrow() -> None:
        try:
            kernel.enforce(guard.policy)
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise KernelError(
                    "drop(): the audit layer enforces the narrower policy, but the kernel "
                    "layer cannot follow: Landlock allows 16 stacked layers per process and "
                    "this one has them all (one per drop() that changes a file-system or TCP "
                    "grant, plus any the pytest process runs under). Drop several grants in "
                    "fewer steps, or run this test with --permission-kernel=off"
                ) from None
            raise KernelError(f"drop(): the kernel layer could not narrow: {exc}") from exc

    exclusive = guard.exclusive(lambda _: narrow())  # its own opens are no access of the test's
    guard.on_change(lambda: exclusive(()))


def _socket_kind(family: int, kind: int) -> str:
    """``AF_INET SOCK_DGRAM``: a socket named by its family and type."""
    import socket

    from pytest_permission.kernel.seccomp import SOCK_TYPE_MASK

    names = []
    for enum, value in (
        (socket.AddressFamily, family), (socket.SocketKind, kind & SOCK_TYPE_MASK)
    ):
        try:
            names.append(enum(value).name)
        except ValueError:
            names.append(str(value))
    return " ".join(names)


def explain(error: BaseException) -> str | None:
    """A line for the report when the kernel layer probably caused ``error``.

    The kernel layer's refusals are plain ``EACCES``/``EPERM`` errors; this
    says so and names the grant that would allow the access. A path is
    blamed on Landlock only if the file's own permissions allow the access.
    """
    kernel = _active
    found = _os_error(error)
    return None if kernel is None or found is None else kernel.explain(found)


def _os_error(error: BaseException | None) -> OSError | None:
    """The first ``EACCES``/``EPERM`` error in the chain that is not an ``AccessDenied``."""
    from pytest_permission.errors import AccessDenied, chain

    for found in chain(error):
        if (
            isinstance(found, OSError)
            and not isinstance(found, AccessDenied)
            and found.errno in (errno.EACCES, errno.EPERM)
        ):
            return found
    return None


