"""The kernel layer (Linux): the test's policy applied by Landlock and seccomp.

The audit layer sees what Python code asks for; C code, ``ctypes``, private
modules and the child processes a test may start get around it. In the
forked child, before the audit layer is installed and before any thread
starts, :func:`apply` asks the kernel to enforce the same policy, for the
rest of the process's life and for every process it starts:

* Landlock (:mod:`.landlock`): the ``fs_read``/``fs_write`` grants, and TCP
  ports where ``net`` names ports or nothing;
* seccomp (:mod:`.seccomp`): ``child``, ``worker``, ``net`` by socket family,
  and no ``io_uring``.

Both are coarser than the audit layer (a kernel rule names folders, not
string prefixes, and cannot read a system call's memory) and give no
``AccessDenied``, only ``EACCES``/``EPERM``: the audit layer stays in
front with its precise errors, the kernel layer behind it stops what got
past. :func:`follow` makes every ``drop()`` narrow it too.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_permission import paths, scopes
from pytest_permission.audit import implicit
from pytest_permission.plan import Plan
from pytest_permission.policy import Policy

if TYPE_CHECKING:
    from pytest_permission.audit.guard import Guard
    from pytest_permission.kernel.landlock import Rules
    from pytest_permission.kernel.seccomp import Denied, Filter

__all__ = [
    "KernelError", "Support", "apply", "describe", "explain", "follow", "prepare", "support",
]

SYSTEM_PROGRAMS = (
    "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32",
    "/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
)
"""Read and executed by the programs a test granted ``child`` starts."""
OWN = ("/proc/self",)
"""Read by the interpreter and the plugin about their own process."""


class KernelError(RuntimeError):
    """The kernel refused to apply or narrow the layer."""


@dataclass(frozen=True)
class Support:
    """What the running kernel offers."""

    landlock: int
    """Landlock's ABI version; 0 without Landlock."""
    seccomp: bool
    missing: tuple[str, ...]
    """Why a layer is unavailable, one sentence each."""

    def layers(self) -> list[str]:
        """The names of the layers :func:`apply` would add, as the header shows them."""
        names = [f"landlock ABI {self.landlock}"] if self.landlock else []
        return names + (["seccomp"] if self.seccomp else [])


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


_active: _Kernel | None = None
_code: dict[tuple[tuple[str, ...], int], list[str]] = {}
"""The folders code is imported from, for one state of ``sys.path``/``sys.modules``."""


@dataclass(frozen=True)
class Prepared:
    """The kernel layer of one test, made in the pytest process before the fork.

    Rules, the Landlock ruleset and the BPF program are built there, so the
    child only makes the two system calls that restrict it: everything it
    computes, it pays for again in copied pages.
    """

    kernel: _Kernel
    step: _Step
    ruleset: int | None
    """The Landlock ruleset descriptor, ready for ``landlock_restrict_self``."""

    def close(self) -> None:
        """In the pytest process after the fork: close its copies of the descriptors."""
        if self.ruleset is not None:
            os.close(self.ruleset)
        if self.kernel.landlock is not None:
            self.kernel.landlock.close()


def prepare(
    plan: Plan, *, read: Sequence[str] = (), write: Sequence[str] = ()
) -> Prepared | None:
    """What :func:`apply` will enforce for ``plan``; ``None`` where nothing applies.

    ``read``/``write`` are grants (paths, ``*`` prefixes) for what the plugin
    and the tools beside the test use on its behalf, whatever the policy.
    """
    if plan.kernel == "off":
        return None
    offered = support()
    if plan.kernel == "require" and offered.missing:
        raise KernelError("the kernel layer is required but " + "; ".join(offered.missing))
    if not offered.layers():
        return None
    kernel = _Kernel(offered, plan.implicit, read, write)
    step = kernel.step(plan.policy)
    landlock = kernel.landlock
    try:
        ruleset = None if landlock is None or step.rules is None else landlock.ruleset(step.rules)
    except OSError as exc:
        if landlock is not None:
            landlock.close()
        raise KernelError(f"the kernel layer could not be prepared: {exc}") from exc
    return Prepared(kernel, step, ruleset)


def apply(prepared: Prepared | None) -> list[str]:
    """Enforce a prepared kernel layer from now on; the names of the layers added.

    Call it in the child, before the audit layer and before any thread:
    Landlock restricts the calling thread and what it starts.
    """
    global _active
    if prepared is None:
        return []
    from pytest_permission.kernel import libc, seccomp

    kernel = prepared.kernel
    try:
        libc.prctl(seccomp.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        kernel.take(prepared.step, prepared.ruleset)
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

    guard.on_change(narrow)


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


def _below(roots: Iterable[str], found: Iterable[str]) -> list[str]:
    """``found``, without the paths below ``roots`` or below one another."""
    kept: list[str] = []
    covered = tuple(r.rstrip(os.sep) + os.sep for r in roots)
    for path in sorted({paths.normalise(p) for p in found}, key=len):
        if not (path + os.sep).startswith(covered):
            kept.append(path)
            covered += (path.rstrip(os.sep) + os.sep,)
    return kept


def _code_roots() -> list[str]:
    """``sys.path`` and loaded packages, outside the installation: where code is imported from."""
    key = (tuple(p for p in sys.path if isinstance(p, str)), len(sys.modules))
    if key not in _code:
        found = [p or os.getcwd() for p in key[0]]
        for module in list(sys.modules.values()):
            found += [p for p in getattr(module, "__path__", None) or () if isinstance(p, str)]
        _code.clear()
        _code[key] = _below(implicit.installation(), found)
    return _code[key]


@dataclass(frozen=True)
class _Step:
    rules: Rules | None
    denied: Denied | None
    program: Filter | None


class _Kernel:
    """The kernel layer of this process: what it allows now, and how to narrow it."""

    def __init__(
        self, offered: Support, implicit_grants: bool, read: Sequence[str], write: Sequence[str]
    ) -> None:
        from pytest_permission.kernel import landlock, libc, seccomp

        self.offered = offered
        self.landlock = landlock.Landlock(offered.landlock) if offered.landlock else None
        self.arch = seccomp.ARCHES[libc.MACHINE] if offered.seccomp else None
        self.denied: Denied | None = None
        self.implicit = implicit_grants
        self.own = [*implicit.installation(), *OWN, *_anchors(read)]
        """Read whatever the policy: the plugin finishes the report after the test."""
        self.own_write = _anchors(write)
        self.code = _code_roots() if implicit_grants else []

    def enforce(self, policy: Policy) -> None:
        """Make the kernel allow no more than ``policy``: a layer or filter where it changed."""
        self.take(self.step(policy))

    def step(self, policy: Policy) -> _Step:
        """What enforcing ``policy`` takes, computed without a system call."""
        from pytest_permission.kernel import seccomp

        rules = self.rules(policy) if self.landlock is not None else None
        if self.arch is None:
            return _Step(rules, None, None)
        landlock = self.landlock
        denied = seccomp.Denied(
            child=not policy.has("child"),
            worker=not policy.has("worker"),
            net=not _inet(policy),
            tcp=landlock is not None and landlock.version >= 4
            and rules is not None and rules.ports is not None,
        )
        return _Step(rules, denied, seccomp.Filter(seccomp.program(self.arch, denied)))

    def take(self, step: _Step, ruleset: int | None = None) -> None:
        """Make the system calls ``step`` needs: a layer or filter where it changed.

        ``ruleset`` is ``step``'s Landlock ruleset if it was built ahead.
        """
        landlock = self.landlock
        if landlock is not None and step.rules is not None and step.rules != landlock.rules:
            landlock.restrict(step.rules, ruleset)
        if step.program is not None and step.denied != self.denied:
            step.program.install()
            self.denied = step.denied

    def rules(self, policy: Policy) -> Rules:
        """The Landlock layer for ``policy``, its implicit grants and the plugin's needs."""
        from pytest_permission.kernel.landlock import (
            EXECUTE,
            READ,
            SCOPE_ABSTRACT_UNIX_SOCKET,
            SCOPE_SIGNAL,
            WRITE,
            Rules,
            anchor,
            merge,
        )

        child = policy.has("child")
        read = READ | (EXECUTE if child else 0)
        effective = policy.resolved()
        entries: list[tuple[str, int]] = []
        for scope, rights in ((scopes.FS_READ, read), (scopes.FS_WRITE, WRITE)):
            grant = effective.grant(scope)
            if grant.everything:
                entries.append((os.sep, rights))
            entries += [(anchor(rule.text, rule.prefix), rights) for rule in grant.rules]
        entries += [(path, read) for path in self.own]
        entries += [(path, WRITE) for path in self.own_write]
        entries += [(path, READ | EXECUTE) for path in SYSTEM_PROGRAMS if child]
        if self.implicit:
            entries += [(path, READ) for path in implicit.system_paths(net=_net(policy))]
            entries += [(path, READ) for path in self.code]
            entries += [(path, READ | WRITE) for path in implicit.WRITABLE]
        scoped = (0 if child else SCOPE_SIGNAL) | (
            0 if policy.has("net") else SCOPE_ABSTRACT_UNIX_SOCKET
        )
        return Rules(merge(entries), _ports(policy), scoped)

    def explain(self, error: OSError) -> str | None:
        what = f"{type(error).__name__}: [Errno {error.errno}] {error.strerror}"
        if error.filename is not None:
            path = paths.normalise(os.fsdecode(error.filename))
            keyword = self.missing_grant(path)
            if keyword is None:
                return None
            return (
                f"the kernel layer (Landlock) refused this access to {path} ({what}); "
                f"@pytest.mark.permission({keyword}=[{path!r}]) would allow it"
            )
        causes = []
        if error.errno == errno.EPERM and self.denied is not None:
            if self.denied.child:
                causes.append("starting a process (child=True)")
            if self.denied.child and self.denied.worker:
                causes.append("starting a thread (worker=True)")
            if self.denied.net:
                causes.append("opening a network socket (net=[...])")
        rules = self.landlock.rules if self.landlock is not None else None
        if error.errno == errno.EACCES and rules is not None and rules.ports is not None:
            causes.append("TCP bind/connect on a port not granted (net=['host:port'])")
        if not causes:
            return None
        return f"the kernel layer may have refused this ({what}); it denies " + "; ".join(causes)

    def missing_grant(self, path: str) -> str | None:
        """``fs_read`` or ``fs_write``: a right Landlock withholds that the mode bits allow."""
        from pytest_permission.kernel.landlock import READ_FILE, WRITE_FILE

        rules = self.landlock.rules if self.landlock is not None else None
        if rules is None:
            return None
        real = os.path.realpath(path)
        existing = real if os.path.lexists(real) else os.path.dirname(real)
        below = real + os.sep
        granted = [(os.path.realpath(p).rstrip(os.sep) + os.sep, r) for p, r in rules.paths.items()]
        for keyword, right, mode in (
            ("fs_read", READ_FILE, os.R_OK), ("fs_write", WRITE_FILE, os.W_OK)
        ):
            allowed = any(rights & right and below.startswith(root) for root, rights in granted)
            if not allowed and os.access(existing, mode):
                return keyword
        return None


def _anchors(grants: Sequence[str]) -> list[str]:
    """The folders or files Landlock names for grant texts (see :func:`.landlock.anchor`)."""
    from pytest_permission.kernel.landlock import anchor

    rules = [paths.resolved(paths.parse(text)) for text in grants]
    return [anchor(rule.text, rule.prefix) for rule in rules]


def _net(policy: Policy) -> bool:
    """Whether ``net`` grants anything: the resolver's files are then implicit."""
    return policy.has("net") or bool(policy.grant(scopes.NET).rules)


def _inet(policy: Policy) -> bool:
    """Whether ``net`` grants anything but Unix-socket paths."""
    grant = policy.grant(scopes.NET)
    return grant.everything or any(not rule.host.startswith(os.sep) for rule in grant.rules)


def _ports(policy: Policy) -> frozenset[int] | None:
    """TCP ports to allow; ``None`` when a grant names a host with any port."""
    grant = policy.grant(scopes.NET)
    hosts = [rule for rule in grant.rules if not rule.host.startswith(os.sep)]
    if grant.everything or any(rule.port is None for rule in hosts):
        return None
    return frozenset(rule.port for rule in hosts if rule.port is not None)
