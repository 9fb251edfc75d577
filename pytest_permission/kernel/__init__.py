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

from pytest_permission import paths, scopes
from pytest_permission.plan import Plan
from pytest_permission.policy import Policy

if TYPE_CHECKING:
    from pytest_permission.audit.guard import Guard
    from pytest_permission.kernel.landlock import Rules
    from pytest_permission.kernel.mapping import Mapping
    from pytest_permission.kernel.seccomp import Denied, Filter
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


_active: _Kernel | None = None


@dataclass(frozen=True)
class Prepared:
    """The kernel layer of one test, made in the pytest process before the fork.

    Rules, the Landlock ruleset and the BPF program are built there (or
    taken from the cache of earlier tests), so the child only makes the
    system calls that restrict it: everything it computes, it pays for
    again in copied pages.
    """

    kernel: _Kernel
    step: _Step
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
    again = _last[0] if _last else None
    if again is not None and again.fits(plan, read, write):
        return again.prepared
    kernel = _Kernel(offered, plan.policy, plan.implicit, read, write)
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
    _last[:] = [_Again(prepared, plan, read, write)] if _Again.reusable(prepared, plan) else []
    return prepared


class _Again:
    """The last test's kernel layer, for the next test if it needs the very same.

    Most tests of a module share a marker; checking that the next one does
    touches far fewer objects than making its layer anew, and in a process
    that forks before every test each object touched costs a page fault.
    Only for policies without file-system grants (whose rules depend on
    which paths exist) and without a supervisor (one per child).
    """

    def __init__(
        self, prepared: Prepared, plan: Plan, read: Sequence[str], write: Sequence[str],
    ) -> None:
        from pytest_permission.kernel import landlock, mapping

        self.prepared = prepared
        self.inputs = (plan.policy, plan.implicit, plan.kernel, list(read), list(write))
        self.sys_path = list(sys.path)
        self.modules = len(sys.modules)
        self.slot = list(landlock._slot_key)
        watch = mapping.watch()
        self.generation = watch.generation()
        rules = prepared.step.rules
        self.unwatched = [  # a change in a watched folder changes the generation
            path for path in (rules.paths if rules is not None else ())
            if os.path.dirname(path) not in watch.folders
        ]
        self.identities = self.identify()

    @staticmethod
    def reusable(prepared: Prepared, plan: Plan) -> bool:
        rules = prepared.step.rules
        return (
            prepared.supervisor is None and (rules is None or not rules.own)
            and not prepared.strays
            and not plan.policy.grant(scopes.FS_READ).rules
            and not plan.policy.grant(scopes.FS_WRITE).rules
        )

    def identify(self) -> tuple[object, ...]:
        from pytest_permission.kernel.landlock import identify

        return tuple(identify(path) for path in self.unwatched)

    def fits(self, plan: Plan, read: Sequence[str], write: Sequence[str]) -> bool:
        from pytest_permission.kernel import landlock, mapping, supervisor

        return (
            (plan.policy, plan.implicit, plan.kernel, read, write) == self.inputs
            and sys.path == self.sys_path and len(sys.modules) == self.modules
            and landlock._slot_key == self.slot and not supervisor._running
            and mapping.watch().generation() == self.generation
            and (not self.unwatched or self.identify() == self.identities)
        )


_last: list[_Again] = []


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


@dataclass(frozen=True)
class _Step:
    rules: Rules | None
    denied: Denied | None
    program: Filter | None


class _Kernel:
    """The kernel layer of this process: what it allows now, and how to narrow it."""

    def __init__(
        self, offered: Support, policy: Policy, implicit_grants: bool,
        read: Sequence[str], write: Sequence[str],
    ) -> None:
        from pytest_permission.kernel import landlock, libc, mapping, seccomp

        self.offered = offered
        self.landlock = landlock.Landlock(offered.landlock) if offered.landlock else None
        self.arch = seccomp.ARCHES[libc.MACHINE] if offered.seccomp else None
        self.denied: Denied | None = None
        self.channel: int | None = None
        """The child's end of the supervisor's socket pair, for ``drop()`` reports."""
        child = policy.has("child")
        base = mapping.base(enabled=implicit_grants, net=_net(policy), child=child)
        grants, gaps = mapping.grant_rules(policy.resolved(), child=child)
        extra = mapping.extra_rules(read, write, child=child)
        self.mapping: Mapping = mapping.Mapping(base, extra, grants, gaps)
        if base.widened:
            import warnings

            from pytest_permission.kernel.widening import KernelWarning

            for text in base.widened:
                warnings.warn(KernelWarning(text), stacklevel=2)

    def enforce(self, policy: Policy) -> None:
        """Make the kernel allow no more than ``policy``: a layer or filter where it changed."""
        self.take(self.step(policy, first=False))
        if self.channel is not None:
            from pytest_permission.kernel.supervisor import report

            report(self.channel, policy.describe())

    def step(self, policy: Policy, *, first: bool = True) -> _Step:
        """What enforcing ``policy`` takes, computed without a system call.

        The first step may hand calls to the supervisor; a later one (a
        ``drop()``) only refuses, the supervisor narrowing with it.
        """
        from pytest_permission.kernel import seccomp

        rules = self.rules(policy) if self.landlock is not None else None
        if self.arch is None:
            return _Step(rules, None, None)
        landlock = self.landlock
        inet = _inet(policy)
        writable = _writable(policy, self.mapping)
        denied = seccomp.Denied(
            child=not policy.has("child"),
            worker=not policy.has("worker"),
            net=not inet,
            tcp=landlock is not None and landlock.version >= 4
            and rules is not None and rules.ports is not None,
            hosts=first and inet and not policy.has("net"),
            meta="allow" if policy.has("fs.write") else "notify" if writable else "deny",
            paths=first and bool(self.mapping.gaps),
        )
        if not first:  # the first filter's notifications stand; refuse only what is all gone
            denied = seccomp.Denied(
                denied.child, denied.worker, denied.net, denied.tcp,
                meta="deny" if denied.meta == "deny" else "allow",
            )
        return _Step(rules, denied, _filter(denied))

    def take(
        self, step: _Step, ruleset: int | None = None, supervisor: Supervisor | None = None
    ) -> None:
        """Make the system calls ``step`` needs: a layer or filter where it changed.

        ``ruleset`` is ``step``'s Landlock ruleset if it was built ahead;
        ``supervisor``, the one to hand the first filter's listener to.
        """
        landlock = self.landlock
        if landlock is not None and step.rules is not None and step.rules != landlock.rules:
            landlock.restrict(step.rules, ruleset)
        if step.program is None or step.denied is None or (
            self.denied is not None and step.denied.refusals() == self.denied.refusals()
        ):
            return
        if supervisor is None:
            step.program.install()
        else:
            listener = step.program.install(listener=True)
            assert listener is not None
            self.hand_over(supervisor, listener)
        self.denied = step.denied

    def hand_over(self, supervisor: Supervisor, listener: int) -> None:
        """In the child: give the first filter's listener to ``supervisor``, keep the
        channel for ``drop()`` reports. ``OSError`` if the supervisor does not take it."""
        from pytest_permission.kernel.supervisor import handover

        self.channel = supervisor.child.fileno()
        os.close(supervisor.parent.fileno())  # the pytest process's end, not the test's
        try:
            handover(self.channel, listener)
        except OSError as exc:
            raise KernelError(f"the kernel layer could not be applied: {exc}") from exc

    def calls(
        self, step: _Step, ruleset: int | None, supervisor: Supervisor | None
    ) -> tuple[tuple[object, tuple[object, ...]], ...]:
        """What :meth:`take` would call for the first ``step``, arguments ready (the
        filter's listener, if any, is the last call's result); empty where the child
        must do more (add its own ``/proc/self`` rules)."""
        from pytest_permission.kernel import libc, seccomp

        if step.rules is not None and step.rules.own:
            return ()
        found = [libc.prctl_call(seccomp.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)]
        if ruleset is not None:
            found.append(libc.syscall_call(libc.RESTRICT_SELF, ruleset, 0))
        if step.program is not None:
            found.append(step.program.call(listener=supervisor is not None))
        return tuple(found)

    def settle(self, prepared: Prepared) -> None:
        """In the child, after :meth:`calls`: note what is in force, and close the
        ruleset descriptors (the test must not add to the one the next test reuses)."""
        from pytest_permission.kernel import landlock

        landlock.release(prepared.ruleset)
        landlock.seal()
        if self.landlock is not None:
            self.landlock.rules = prepared.step.rules
        self.denied = prepared.step.denied

    def rules(self, policy: Policy) -> Rules:
        """The Landlock layer for ``policy``: its grants' rules, the implicit ones and
        the plugin's needs (the grants of ``policy`` must be the first layer's or fewer)."""
        from pytest_permission.kernel.landlock import (
            SCOPE_ABSTRACT_UNIX_SOCKET,
            SCOPE_SIGNAL,
            Rules,
        )
        from pytest_permission.kernel.mapping import own_proc

        keep = [(scope.name, "*") for scope in (scopes.FS_READ, scopes.FS_WRITE)
                if policy.grant(scope).everything]
        if self.mapping.grants:
            keep += [(scope.name, rule.text) for scope in (scopes.FS_READ, scopes.FS_WRITE)
                     for rule in policy.resolved().grant(scope).rules]
        own = self.mapping.rules(keep)
        scoped = (0 if policy.has("child") else SCOPE_SIGNAL) | (
            0 if policy.has("net") else SCOPE_ABSTRACT_UNIX_SOCKET
        )
        proc = {p: own.pop(p) for p in [p for p in own if own_proc(p)]}
        return Rules(own, _ports(policy), scoped, proc, self.mapping.base.shared)

    def supervisor(
        self, policy: Policy, first: _Step, read: Sequence[str], write: Sequence[str]
    ) -> Supervisor:
        """A supervisor for ``policy``'s first filter (not started)."""
        from pytest_permission.kernel import decide, fscalls, netcalls, seccomp
        from pytest_permission.kernel.supervisor import Supervisor

        assert self.arch is not None and first.denied is not None
        rules = first.rules
        view = decide.view(
            policy, read=read, write=write,
            landlock=rules.all() if rules is not None else {},
            hosts_by_address=first.denied.hosts,
        )
        handlers = {}
        for module, names in ((netcalls, seccomp.NET_CALLS), (fscalls, seccomp.PATH_CALLS),
                              (fscalls, seccomp.META_CALLS)):
            for name in names:
                number = self.arch.calls.get(name)
                if number is not None:
                    handlers[number] = (name, getattr(module, "open_" if name == "open" else name))
        return Supervisor(view, handlers)

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
        denied = self.denied
        if error.errno == errno.EPERM and denied is not None:
            if denied.child:
                causes.append("starting a process (child=True)")
            if denied.child and denied.worker:
                causes.append("starting a thread (worker=True)")
            if denied.net or denied.hosts:
                causes.append("opening a network socket of this kind (net=[...])")
        if error.errno == errno.EACCES and denied is not None:
            if denied.net or denied.hosts:
                causes.append("connecting, binding or sending to an address and port the "
                              "net grants do not name (net=['host:port'])")
            if denied.meta != "allow":
                causes.append("changing the mode, owner, times or extended attributes of a "
                              "file outside the write grants (fs_write=[...])")
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
        granted = [(os.path.realpath(p).rstrip(os.sep) + os.sep, r) for p, r in rules.all().items()]
        for keyword, right, mode in (
            ("fs_read", READ_FILE, os.R_OK), ("fs_write", WRITE_FILE, os.W_OK)
        ):
            allowed = any(rights & right and below.startswith(root) for root, rights in granted)
            if not allowed and os.access(existing, mode):
                return keyword
        return None


@functools.lru_cache(maxsize=16)
def _filter(denied: Denied) -> Filter:
    """The BPF program for ``denied`` on this machine, made once per session."""
    from pytest_permission.kernel import libc, seccomp

    return seccomp.Filter(seccomp.program(seccomp.ARCHES[libc.MACHINE], denied))


def _writable(policy: Policy, mapping: Mapping) -> bool:
    """Whether anything but ``/dev/null`` is writable: metadata changes need checking."""
    from pytest_permission.kernel.landlock import WRITE_FILE

    return bool(policy.grant(scopes.FS_WRITE).rules) or any(
        rights & WRITE_FILE for rights in mapping.extra.values()
    )


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
