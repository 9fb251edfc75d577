"""The kernel layer's rules, checked without applying them.

The seccomp program is run through a small BPF interpreter; the Landlock
mapping, the supervisor's decisions and its path resolution are pure or
read only the file system. What the kernel then does with them is
``test_kernel_bypass.py``'s and ``test_kernel_honest.py``'s part.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path

import pytest

from pytest_permission import kernel, paths, scopes
from pytest_permission.audit import implicit
from pytest_permission.kernel import decide, landlock, mapping, seccomp
from pytest_permission.kernel.supervisor import Undecided, resolve
from pytest_permission.policy import Policy

X86 = seccomp.ARCHES["x86_64"]
ALLOW, NOTIFY, KILL = 0x7FFF0000, 0x7FC00000, 0x80000000


def errno_of(number: int) -> int:
    return 0x00050000 | number


def run(code: bytes, name: str | int, *args: int, arch: int = X86.audit) -> int:
    """What the BPF ``code`` answers for a call: a tiny interpreter of the opcodes it uses."""
    number = X86.calls[name] if isinstance(name, str) else name
    ops: list[tuple[int, int, int, int]] = [
        struct.unpack_from("=HBBI", code, i) for i in range(0, len(code), 8)
    ]
    full = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("=iIQ6Q", number, arch, 0, *full)
    pc = a = 0
    while True:
        op, jt, jf, k = ops[pc]
        pc += 1
        if op == 0x20:
            a = struct.unpack_from("=I", data, k)[0]
        elif op == 0x54:
            a &= k
        elif op in (0x15, 0x35, 0x45):
            taken = {0x15: a == k, 0x35: a >= k, 0x45: bool(a & k)}[op]
            pc += jt if taken else jf
        elif op == 0x05:
            pc += k
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unknown opcode {op:#x}")


def test_everything_denied() -> None:
    code = seccomp.program(X86, seccomp.Denied(True, True, True, tcp=True, meta="deny"))
    for name in ("execve", "fork", "clone", "vfork", "execveat"):
        assert run(code, name) == errno_of(errno.EPERM), name
    assert run(code, "clone", 0x10000) == errno_of(errno.EPERM)  # a thread too
    for name in ("clone3", "io_uring_setup"):
        assert run(code, name) == errno_of(errno.ENOSYS)
    for name in seccomp.META_CALLS:
        assert run(code, name) == errno_of(errno.EACCES), name
    assert run(code, "socket", socket.AF_INET, socket.SOCK_STREAM) == ALLOW  # Landlock's
    assert run(code, "socket", socket.AF_INET, socket.SOCK_DGRAM) == errno_of(errno.EPERM)
    assert run(code, "socket", socket.AF_UNIX, socket.SOCK_STREAM) == ALLOW
    for number in (0, 1, 2, 3, 257, 200, 400):  # read, write, open, close, openat, ...
        assert run(code, number) == ALLOW
    assert run(code, 0x40000000 | 2) == KILL  # x32
    assert run(code, 2, arch=0x40000003) == KILL  # i386


def test_hosts_and_paths_go_to_the_supervisor() -> None:
    code = seccomp.program(
        X86, seccomp.Denied(False, False, False, hosts=True, meta="notify", paths=True)
    )
    for name in (*seccomp.PATH_CALLS, *seccomp.META_CALLS, "connect", "bind", "sendmsg",
                 "sendmmsg"):
        assert run(code, name) == NOTIFY, name
    assert run(code, "sendto", 3, 0, 1, 0, 0, 0) == ALLOW  # a connected socket
    assert run(code, "sendto", 3, 0, 1, 0, 0x10, 16) == NOTIFY
    assert run(code, "sendto", 3, 0, 1, 0, 0x7F00_0000_0000, 16) == NOTIFY  # high half only
    inet: list[tuple[int, int, int]] = [
        (socket.AF_INET, socket.SOCK_STREAM, 0), (socket.AF_INET6, socket.SOCK_DGRAM, 17),
        (socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 1),
    ]
    for family, kind, protocol in inet:
        assert run(code, "socket", family, kind, protocol) == ALLOW
    refused: list[tuple[int, int, int]] = [
        (socket.AF_INET, socket.SOCK_RAW, 1), (socket.AF_PACKET, socket.SOCK_RAW, 0),
        (socket.AF_INET, socket.SOCK_STREAM, 132), (40, socket.SOCK_STREAM, 0),
    ]
    for family, kind, protocol in refused:
        assert run(code, "socket", family, kind, protocol) == errno_of(errno.EPERM)
        assert seccomp.refuses_socket(
            seccomp.Denied(False, False, False, hosts=True), family, kind, protocol
        )
    assert run(code, "execve") == ALLOW and run(code, "clone") == ALLOW


def test_threads_with_child_denied_and_worker_granted() -> None:
    code = seccomp.program(X86, seccomp.Denied(child=True, worker=False, net=False))
    assert run(code, "clone", 0x10000 | 0x100) == ALLOW
    assert run(code, "clone", 0x11) == errno_of(errno.EPERM)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("run-1", "run-2", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "file").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("grant", "expected", "exact"),
    [
        ("{t}", ["{t}"], True),
        ("{t}/*", ["{t}"], True),
        ("{t}/file", ["{t}/file"], False),
        ("{t}/run*", ["{t}/run-1", "{t}/run-2"], False),
        ("{t}/missing/report.json", [], False),
        ("/nonexistent-top/app/settings.yaml", [], False),
    ],
)
def test_a_grant_becomes_no_more_than_what_it_names(
    tree: Path, grant: str, expected: list[str], exact: bool
) -> None:
    rule = paths.resolved(paths.parse(grant.format(t=tree)))
    found, said = mapping.anchors(rule)
    assert found == [os.path.realpath(e.format(t=tree)) for e in expected]
    assert said is exact


def test_prune_keeps_one_rule_per_file_and_none_below_a_wider_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    kept = mapping.prune({
        str(tmp_path / "a"): landlock.READ, str(tmp_path / "link"): landlock.READ,
        str(tmp_path / "a" / "b"): landlock.READ_FILE, str(tmp_path / "a" / "c"): landlock.WRITE,
    })
    assert kept == [(str(tmp_path / "a"), landlock.READ),
                    (str(tmp_path / "a" / "c"), landlock.WRITE)]


def test_the_implicit_list_is_the_same_for_both_layers() -> None:
    loader = implicit.loader_paths()
    assert implicit.LOADER_CACHE in loader
    sqlite = next(f for f in loader if os.path.exists(os.path.join(f, "libsqlite3.so.0")))
    audit = implicit.Implicit(enabled=True, net=False)
    assert audit.covers(scopes.FS_READ, os.path.realpath(os.path.join(sqlite, "libsqlite3.so.0")))
    static = dict(mapping.static_rules(enabled=True, net=False, child=False))
    assert any(
        os.path.realpath(sqlite).startswith(os.path.realpath(p)) for p in static
    )
    for path in implicit.PROGRAMS:  # with child only, in both layers
        if os.path.isdir(path) and path not in implicit.loader_paths():
            assert not audit.covers(scopes.FS_READ, os.path.realpath(path) + "/x")
            assert implicit.Implicit(enabled=True, net=False, child=True).covers(
                scopes.FS_READ, os.path.realpath(path) + "/x"
            )


def net(*grants: str, named: tuple[str, ...] = ()) -> decide.Net:
    rules = Policy.from_keywords({"net": list(grants)}).grant(scopes.NET).rules
    return decide.Net(tuple(rules), named)


def test_net_by_address_and_port() -> None:
    assert net("127.0.0.1:5432").allows("127.0.0.1", 5432)
    assert not net("127.0.0.1:5432").allows("127.0.0.2", 5432)
    assert not net("127.0.0.1:5432").allows("127.0.0.1", 5433)
    assert net("localhost:5432").allows("127.0.0.2", 5432)  # localhost: every loopback
    assert net("localhost:5432").allows("::1", 5432)
    assert net("127.0.0.1").allows("127.0.0.1", 1) and not net("127.0.0.1").allows("10.0.0.1", 1)
    assert net("*.example.com:443").allows("203.0.113.9", 443)  # widened, and warned
    assert not net("*.example.com:443").allows("203.0.113.9", 80)


def test_names_resolve_in_the_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(name: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        assert name == "db.internal"
        return [(socket.AF_INET, 1, 6, "", ("10.1.2.3", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    found = net("db.internal:5432", named=("10.0.0.53",))
    assert found.allows("10.1.2.3", 5432)
    assert not found.allows("10.1.2.4", 5432)
    assert found.allows("10.0.0.53", 53) and not found.allows("10.0.0.53", 54)
    assert not net("127.0.0.1:5432").allows("10.0.0.53", 53)  # no name: no resolver


def test_a_drop_report_only_ever_narrows(tmp_path: Path) -> None:
    policy = Policy.from_keywords({"fs_read": [str(tmp_path)], "net": ["127.0.0.1:80"]})
    view = decide.view(policy, read=[], write=[], landlock={}, hosts_by_address=True)
    assert view.read.covers(str(tmp_path / "x"))
    wider = view.narrowed({"fs_read": [str(tmp_path), "/"], "fs_write": True, "net": True})
    assert wider.read.covers(str(tmp_path / "x")) and not wider.read.covers("/etc/passwd")
    assert not wider.write.covers(str(tmp_path / "x"))
    assert wider.net is not None and wider.net.allows("127.0.0.1", 80)
    dropped = view.narrowed({"fs_read": [], "net": []})
    assert not dropped.read.covers(str(tmp_path / "x"))
    assert dropped.net is not None and not dropped.net.allows("127.0.0.1", 80)
    assert not view.narrowed("garbage").read.covers(str(tmp_path / "x"))


def test_paths_resolve_as_the_calling_process_sees_them(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "out").symlink_to("/etc")
    pid = os.getpid()
    real = os.path.realpath(tmp_path)
    assert resolve(f"{tmp_path}/link/x", pid) == f"{real}/real/x"
    assert resolve(f"{tmp_path}/link/../y", pid) == f"{real}/y"  # .. after the link
    assert resolve(f"{tmp_path}/link/out", pid) == "/etc"
    assert resolve(f"{tmp_path}/link/out", pid, follow=False) == f"{real}/real/out"
    assert resolve(f"{tmp_path}/missing/a", pid) == f"{real}/missing/a"
    assert resolve("/proc/self/status", pid) == f"/proc/{pid}/status"
    reader, writer = os.pipe()
    try:
        with pytest.raises(Undecided):
            resolve(f"/proc/self/fd/{reader}", pid)
    finally:
        os.close(reader)
        os.close(writer)


def test_widenings_are_named() -> None:
    exact = Policy.from_keywords({"net": ["localhost:80", "*.example.com:443"]})
    [wild] = kernel.widenings(exact)
    assert "'*.example.com:443'" in wild and "port 443 of any address" in wild
    wildcard = Policy.from_keywords({"net": ["*.example.com"]})
    [wild] = kernel.widenings(wildcard)
    assert "every port of any address" in wild
    assert kernel.widenings(Policy.from_keywords({"net": ["localhost"]})) == []


def test_what_landlock_alone_allows_is_added_up_along_the_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file").write_text("")
    view = decide.view(
        Policy(), read=[], write=[], hosts_by_address=False,
        landlock={str(tmp_path): landlock.READ, str(tmp_path / "sub" / "file"): landlock.WRITE},
    )
    real = os.path.realpath(tmp_path)
    assert view.landlock_allows(f"{real}/sub/other", landlock.READ_FILE)
    assert not view.landlock_allows(f"{real}/sub/other", landlock.WRITE_FILE)
    assert view.landlock_allows(f"{real}/sub/file", landlock.READ_FILE | landlock.WRITE_FILE)
    assert not view.landlock_allows(f"{real}/sub/file", landlock.REMOVE_FILE)  # a file's rule
    assert not view.landlock_allows(f"{real}/sub", landlock.MAKE_REG)
    assert not view.landlock_allows("/etc/passwd", landlock.READ_FILE)
