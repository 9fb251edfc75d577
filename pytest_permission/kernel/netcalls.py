"""The supervisor's network calls: by address and port, on the caller's own socket.

``connect``, ``bind``, ``sendto`` with an address, ``sendmsg`` and
``sendmmsg`` on an IPv4/IPv6 socket are made on behalf of the caller, on a
copy of its socket (the same socket: connecting the copy connects the
caller's), with the supervisor's own copy of the address, once the address
is found granted (:meth:`.decide.Net.allows`). So a change the caller makes
to its memory or its descriptors meanwhile changes nothing. Calls on other
sockets (Unix, netlink) continue unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import struct
from collections.abc import Callable

from pytest_permission.kernel.decide import canonical
from pytest_permission.kernel.supervisor import Answer, Caller, Refused

_MAX_ADDRESS = 128  # sizeof(struct sockaddr_storage)
_MAX_DATA = 1 << 20
"""Most bytes sent per call on the caller's behalf (a stream socket may send less)."""
_MAX_IOV = 1024  # UIO_MAXIOV
_MAX_CONTROL = 1 << 16
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_MMSGHDR = _MSGHDR.size + 8  # struct mmsghdr: a msghdr, msg_len, padding
_SOL_SOCKET, _SO_DOMAIN = 1, 39
_MSG_NOSIGNAL = 0x4000

_libc = ctypes.CDLL(None, use_errno=True)


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def connect(caller: Caller) -> Answer:
    return _address_call(caller, _libc.connect)


def bind(caller: Caller) -> Answer:
    return _address_call(caller, _libc.bind)


def sendto(caller: Caller) -> Answer:
    with _Socket(caller) as sock:
        if not sock.inet:
            return Answer.CONTINUE
        address = _checked(caller, caller.memory(4, _length(caller.arg(5))))
        data = caller.memory(1, min(caller.arg(2), _MAX_DATA))
        flags = caller.signed(3)
        sent = _libc.sendto(
            sock.fd, data, ctypes.c_size_t(len(data)), flags | _MSG_NOSIGNAL, address,
            ctypes.c_uint32(len(address)),
        )
        return _result(caller, sent, flags)


def sendmsg(caller: Caller) -> Answer:
    with _Socket(caller) as sock:
        if not sock.inet:
            return Answer.CONTINUE
        flags = caller.signed(2)
        message = _Message(caller, caller.arg(1))
        return _result(caller, message.send(sock.fd, flags), flags)


def sendmmsg(caller: Caller) -> Answer:
    with _Socket(caller) as sock:
        if not sock.inet:
            return Answer.CONTINUE
        flags = caller.signed(3)
        vector, count = caller.arg(1), min(caller.arg(2) & 0xFFFFFFFF, _MAX_IOV)
        done = 0
        for index in range(count):
            header = vector + index * _MMSGHDR
            try:
                message = _Message(caller, header)
            except Refused:
                if done:
                    break
                raise
            sent = message.send(sock.fd, flags)
            if sent < 0:
                if done:
                    break
                return _result(caller, sent, flags)
            from pytest_permission.kernel import notify

            notify.write(caller.pid, header + _MSGHDR.size, struct.pack("=I", sent))
            done += 1
        return Answer(done)


def _address_call(caller: Caller, function: Callable[..., int]) -> Answer:
    """``connect``/``bind`` on behalf of the caller, once its address is granted."""
    with _Socket(caller) as sock:
        if not sock.inet:
            return Answer.CONTINUE
        address = _checked(caller, caller.memory(1, _length(caller.arg(2))))
        if function(sock.fd, address, ctypes.c_uint32(len(address))) < 0:
            raise Refused(ctypes.get_errno())
        return Answer(0)


def _length(value: int) -> int:
    size = value & 0xFFFFFFFF
    if size > _MAX_ADDRESS:
        raise Refused(errno.EINVAL)
    return size


def _checked(caller: Caller, address: bytes) -> bytes:
    """``address``, if the grants allow it; ``EACCES`` (as Landlock answers) if not."""
    endpoint = _endpoint(address)
    net = caller.view.net
    if endpoint is not None and (net is None or not net.allows(*endpoint)):
        raise Refused(errno.EACCES)
    return address


def _endpoint(address: bytes) -> tuple[str, int] | None:
    """``(host, port)`` of an IPv4/IPv6 socket address; ``None`` for ``AF_UNSPEC``
    (dissolving an association, which reaches no host)."""
    if len(address) < 2:
        raise Refused(errno.EINVAL)
    (family,) = struct.unpack_from("=H", address)
    if family == socket.AF_UNSPEC:
        return None
    if family == socket.AF_INET and len(address) >= 8:
        port, raw = struct.unpack_from("!H4s", address, 2)
        return canonical(socket.inet_ntop(socket.AF_INET, raw)), port
    if family == socket.AF_INET6 and len(address) >= 24:
        port, _flow, raw = struct.unpack_from("!HI16s", address, 2)
        return canonical(socket.inet_ntop(socket.AF_INET6, raw)), port
    raise Refused(errno.EINVAL)


def _result(caller: Caller, sent: int, flags: int) -> Answer:
    """A send's result; ``EPIPE`` raises ``SIGPIPE`` in the caller, as the kernel would."""
    if sent >= 0:
        return Answer(sent)
    number = ctypes.get_errno()
    if number == errno.EPIPE and not flags & _MSG_NOSIGNAL:
        with contextlib.suppress(OSError):
            os.kill(caller.pid, signal.SIGPIPE)
    raise Refused(number)


class _Socket:
    """A copy of the caller's descriptor, and whether it is an IPv4/IPv6 socket."""

    def __init__(self, caller: Caller) -> None:
        self.fd = caller.take(caller.signed(0))
        domain = ctypes.c_int(0)
        size = ctypes.c_uint32(ctypes.sizeof(domain))
        found = _libc.getsockopt(
            self.fd, _SOL_SOCKET, _SO_DOMAIN, ctypes.byref(domain), ctypes.byref(size)
        )
        self.inet = found == 0 and domain.value in (socket.AF_INET, socket.AF_INET6)

    def __enter__(self) -> _Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class _Message:
    """A ``struct msghdr`` of the caller's, copied here with its address checked."""

    def __init__(self, caller: Caller, address: int) -> None:
        from pytest_permission.kernel import notify

        pid = caller.pid
        name, namelen, iov, iovlen, control, controllen, _flags = _MSGHDR.unpack(
            notify.read(pid, address, _MSGHDR.size)
        )
        self.name = _checked(caller, notify.read(pid, name, _length(namelen))) if name else b""
        if iovlen > _MAX_IOV:
            raise Refused(errno.EMSGSIZE)
        parts, left = [], _MAX_DATA
        vector = notify.read(pid, iov, 16 * iovlen) if iovlen else b""
        for index in range(iovlen):
            base, length = struct.unpack_from("=QQ", vector, 16 * index)
            parts.append(notify.read(pid, base, min(length, left)))
            left -= len(parts[-1])
        self.parts = [ctypes.create_string_buffer(p, len(p)) for p in parts]
        self.control = notify.read(pid, control, min(controllen, _MAX_CONTROL)) if control else b""

    def send(self, fd: int, flags: int) -> int:
        iovs = (_Iovec * max(len(self.parts), 1))()
        for index, part in enumerate(self.parts):
            iovs[index] = _Iovec(ctypes.addressof(part), len(part))
        name = ctypes.create_string_buffer(self.name, len(self.name)) if self.name else None
        control = ctypes.create_string_buffer(self.control, len(self.control))
        header = _Msghdr(
            ctypes.addressof(name) if name is not None else None, len(self.name),
            ctypes.addressof(iovs), len(self.parts),
            ctypes.addressof(control) if self.control else None, len(self.control), 0,
        )
        result: int = _libc.sendmsg(fd, ctypes.byref(header), flags | _MSG_NOSIGNAL)
        return result
