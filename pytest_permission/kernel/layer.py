"""One test's kernel layer in a process: its Landlock rules, its seccomp filter, its steps.

:func:`pytest_permission.kernel.prepare` makes a :class:`Layer` in the
pytest process and the first :class:`Step`; the child takes that step
(:meth:`Layer.take`, or the calls made ready by :meth:`Layer.calls`) and
every later one, one per ``drop()`` that narrows it.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_permission import paths, scopes
from pytest_permission.kernel import (
    KernelError,
    decide,
    fscalls,
    landlock,
    libc,
    mapping,
    netcalls,
    seccomp,
)
from pytest_permission.kernel.landlock import (
    READ_FILE,
    SCOPE_ABSTRACT_UNIX_SOCKET,
    SCOPE_SIGNAL,
    WRITE_FILE,
    Rules,
)
from pytest_permission.kernel.mapping import Mapping, own_proc
from pytest_permission.kernel.seccomp import Denied, Filter
from pytest_permission.kernel.supervisor import Supervisor, handover, report
from pytest_permission.kernel.widening import KernelWarning
from pytest_permission.policy import Policy

if TYPE_CHECKING:
    from pytest_permission.kernel import Prepared, Support


@dataclass(frozen=True)
class Step:
    rules: Rules | None
    denied: Denied | None
    program: Filter | None


class Layer:
    """The kernel layer of this process: what it allows now, and how to narrow it."""

    def __init__(
        self, offered: Support, policy: Policy, implicit_grants: bool,
        read: Sequence[str], write: Sequence[str],
    ) -> None:

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


            for text in base.widened:
                warnings.warn(KernelWarning(text), stacklevel=2)

    def enforce(self, policy: Policy) -> None:
        """Make the kernel allow no more than ``policy``: a layer or filter where it changed."""
        self.take(self.step(policy, first=False))
        if self.channel is not None:

            report(self.channel, policy.describe())

    def step(self, policy: Policy, *, first: bool = True) -> Step:
        """What enforcing ``policy`` takes, computed without a system call.

        The first step may hand calls to the supervisor; a later one (a
        ``drop()``) only refuses, the supervisor narrowing with it.
        """

        rules = self.rules(policy) if self.landlock is not None else None
        if self.arch is None:
            return Step(rules, None, None)
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
        return Step(rules, denied, _filter(denied))

    def take(
        self, step: Step, ruleset: int | None = None, supervisor: Supervisor | None = None
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

        self.channel = supervisor.child.fileno()
        os.close(supervisor.parent.fileno())  # the pytest process's end, not the test's
        try:
            handover(self.channel, listener)
        except OSError as exc:
            raise KernelError(f"the kernel layer could not be applied: {exc}") from exc

    def calls(
        self, step: Step, ruleset: int | None, supervisor: Supervisor | None
    ) -> tuple[tuple[object, tuple[object, ...]], ...]:
        """What :meth:`take` would call for the first ``step``, arguments ready (the
        filter's listener, if any, is the last call's result); empty where the child
        must do more (add its own ``/proc/self`` rules)."""

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

        landlock.release(prepared.ruleset)
        landlock.seal()
        if self.landlock is not None:
            self.landlock.rules = prepared.step.rules
        self.denied = prepared.step.denied

    def rules(self, policy: Policy) -> Rules:
        """The Landlock layer for ``policy``: its grants' rules, the implicit ones and
        the plugin's needs (the grants of ``policy`` must be the first layer's or fewer)."""

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
        self, policy: Policy, first: Step, read: Sequence[str], write: Sequence[str]
    ) -> Supervisor:
        """A supervisor for ``policy``'s first filter (not started)."""

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

    return seccomp.Filter(seccomp.program(seccomp.ARCHES[libc.MACHINE], denied))


def _writable(policy: Policy, mapping: Mapping) -> bool:
    """Whether anything but ``/dev/null`` is writable: metadata changes need checking."""

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
