"""net enforcement: real sockets on 127.0.0.1 and real look-ups, in a fresh process."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

CONNECT = """
import socket
def connect(host, port):
    with socket.create_connection((host, port), timeout=5) as s:
        return s.getpeername()[1]
"""


def denied(resource: str) -> dict[str, Any]:
    return {"denied": True, "permission": "Net", "resource": resource, "code": "ERR_ACCESS_DENIED"}


def accepted(server: socket.socket) -> int:
    """How many connections reached ``server`` (queued ones count: no thread needed)."""
    server.settimeout(0.5)
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except (BlockingIOError, TimeoutError):
            return count
        conn.close()
        count += 1


@pytest.fixture
def server() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_connect_denied_without_net_and_nothing_reaches_the_server(
    enforced: Any, server: socket.socket
) -> None:
    port = server.getsockname()[1]
    out = enforced(
        f"""
        attempt("connect", lambda: connect("127.0.0.1", {port}))
        attempt("connect_ex", lambda: socket.socket().connect_ex(("127.0.0.1", {port})))
        attempt("recorded", lambda: [(d.permission, d.resource) for d in GUARD.denials])
        """,
        {"net": False},
        setup=CONNECT,
    )
    assert out["connect"] == denied(f"127.0.0.1:{port}")
    assert out["connect_ex"] == denied(f"127.0.0.1:{port}")
    resource = f"127.0.0.1:{port}"
    assert out["recorded"]["value"] == repr([("Net", resource), ("Net", resource)])
    assert accepted(server) == 0


@pytest.mark.parametrize("grant", ["127.0.0.1", "localhost", "localhost:{port}", "*"])
def test_connect_allowed_by_address_loopback_name_and_port(
    enforced: Any, server: socket.socket, grant: str
) -> None:
    port = server.getsockname()[1]
    out = enforced(
        f'attempt("connect", lambda: connect("127.0.0.1", {port}))\n',
        {"net": [grant.format(port=port)]},
        setup=CONNECT,
    )
    assert out["connect"] == {"denied": False, "value": repr(port)}
    assert accepted(server) == 1


def test_connect_to_another_port_than_granted_is_denied(
    enforced: Any, server: socket.socket
) -> None:
    port = server.getsockname()[1]
    other = socket.create_server(("127.0.0.1", 0))
    other_port = other.getsockname()[1]
    try:
        out = enforced(
            f'attempt("connect", lambda: connect("127.0.0.1", {other_port}))\n',
            {"net": [f"localhost:{port}"]},
            setup=CONNECT,
        )
        assert out["connect"] == denied(f"127.0.0.1:{other_port}")
        assert accepted(other) == 0
    finally:
        other.close()


def test_connect_by_name_checks_the_name(enforced: Any, server: socket.socket) -> None:
    port = server.getsockname()[1]
    out = enforced(
        f'attempt("connect", lambda: connect("localhost", {port}))\n',
        {"net": ["127.0.0.2"]},
        setup=CONNECT,
    )
    assert out["connect"] == denied(f"localhost:{port}")
    assert accepted(server) == 0


def test_bind_denied(enforced: Any) -> None:
    out = enforced(
        """
        import socket
        s = socket.socket()
        attempt("bind", lambda: s.bind(("127.0.0.1", 0)))
        attempt("any", lambda: s.bind(("", 0)))
        attempt("v6", lambda: socket.socket(socket.AF_INET6).bind(("::1", 0)))
        attempt("after", lambda: s.getsockname())
        """,
        {"net": ["10.0.0.1"]},
    )
    assert out["bind"] == denied("127.0.0.1:0")
    assert out["any"] == denied("0.0.0.0:0")
    v6 = out["v6"]
    assert v6 == denied("[::1]:0") or v6.get("error") == "OSError"  # no IPv6 here
    assert out["after"] == {"denied": False, "value": "('0.0.0.0', 0)"}


def test_bind_allowed_when_granted(enforced: Any) -> None:
    out = enforced(
        'import socket\nattempt("bind", lambda: socket.socket().bind(("127.0.0.1", 0)))\n',
        {"net": ["localhost"]},
    )
    assert out["bind"] == {"denied": False, "value": "None"}


def test_udp_sendto_denied_and_allowed(enforced: Any) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    code = f"""
        import socket
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attempt("sendto", lambda: u.sendto(b"ping", ("127.0.0.1", {port})))
        attempt("sendmsg", lambda: u.sendmsg([b"ping"], [], 0, ("127.0.0.1", {port})))
        """
    try:
        out = enforced(code, {"net": False})
        assert out["sendto"] == denied(f"127.0.0.1:{port}")
        assert out["sendmsg"] == denied(f"127.0.0.1:{port}")
        receiver.settimeout(0.5)
        with pytest.raises(TimeoutError):
            receiver.recvfrom(16)

        out = enforced(code, {"net": [f"127.0.0.1:{port}"]})
        assert out["sendto"] == {"denied": False, "value": "4"}
        receiver.settimeout(5)
        assert receiver.recvfrom(16)[0] == b"ping"
    finally:
        receiver.close()


def test_lookup_of_a_granted_name_then_connect_to_its_address(
    enforced: Any, server: socket.socket
) -> None:
    port = server.getsockname()[1]
    out = enforced(
        f"""
        infos = socket.getaddrinfo("localhost", {port}, socket.AF_INET, socket.SOCK_STREAM)
        address = infos[0][4]
        attempt("address", lambda: address)
        attempt("connect", lambda: connect(*address))
        """,
        {"net": ["localhost"]},
        setup=CONNECT,
    )
    assert out["address"] == {"denied": False, "value": repr(("127.0.0.1", port))}
    assert out["connect"] == {"denied": False, "value": repr(port)}
    assert accepted(server) == 1


def test_lookups_of_names_not_granted_are_denied(enforced: Any) -> None:
    out = enforced(
        """
        import socket
        attempt("getaddrinfo", lambda: socket.getaddrinfo("localhost", 80))
        attempt("service", lambda: socket.getaddrinfo("localhost", "https"))
        attempt("gethostbyname", lambda: socket.gethostbyname("Example.INVALID."))
        attempt("gethostbyname_ex", lambda: socket.gethostbyname_ex("example.invalid"))
        attempt("gethostbyaddr", lambda: socket.gethostbyaddr("127.0.0.1"))
        attempt("getnameinfo", lambda: socket.getnameinfo(("127.0.0.1", 80), 0))
        attempt("numeric", lambda: socket.getaddrinfo("127.0.0.1", 80))
        attempt("granted", lambda: len(socket.getaddrinfo("localhost", 8080)) > 0)
        attempt("wrong_port", lambda: socket.getaddrinfo("localhost", 8081))
        attempt("no_port", lambda: len(socket.getaddrinfo("localhost", None)) > 0)
        """,
        {"net": ["localhost:8080"]},
    )
    assert out["getaddrinfo"] == denied("localhost:80")
    assert out["service"] == denied("localhost:443")
    assert out["gethostbyname"] == denied("example.invalid")
    assert out["gethostbyname_ex"] == denied("example.invalid")
    assert out["gethostbyaddr"]["denied"] is False  # loopback: covered by "localhost"
    assert out["getnameinfo"] == denied("127.0.0.1:80")
    assert out["numeric"] == denied("127.0.0.1:80")
    assert out["granted"] == {"denied": False, "value": "True"}
    assert out["wrong_port"] == denied("localhost:8081")
    assert out["no_port"] == {"denied": False, "value": "True"}


def test_lookups_denied_without_any_grant(enforced: Any) -> None:
    out = enforced(
        """
        import socket
        attempt("gethostbyaddr", lambda: socket.gethostbyaddr("127.0.0.1"))
        attempt("no_port", lambda: socket.getaddrinfo("localhost", None))
        attempt("no_name", lambda: len(socket.getaddrinfo(None, 80)) > 0)
        """,
        {"net": False},
    )
    assert out["gethostbyaddr"] == denied("127.0.0.1")
    assert out["no_port"] == denied("localhost")
    assert out["no_name"] == {"denied": False, "value": "True"}  # resolves no name


def test_connect_to_an_address_a_granted_name_resolved_to(
    enforced: Any, server: socket.socket
) -> None:
    """The host name resolves to a loopback address that only the look-up grants."""
    name = socket.gethostname().lower()
    try:
        resolved = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"{name!r} does not resolve here")
    if name == "localhost" or resolved != "127.0.0.1":
        pytest.skip(f"{name!r} resolves to {resolved}, not to this test's server")
    port = server.getsockname()[1]
    out = enforced(
        f"""
        attempt("before", lambda: connect("127.0.0.1", {port}))
        attempt("lookup", lambda: socket.gethostbyname({name!r}))
        attempt("after", lambda: connect("127.0.0.1", {port}))
        attempt("other_port", lambda: connect("127.0.0.1", {port + 1}))
        GUARD.drop("net", {name + ":" + str(port)!r})
        attempt("dropped", lambda: connect("127.0.0.1", {port}))
        """,
        {"net": [f"{name}:{port}"]},
        setup=CONNECT,
    )
    assert out["before"] == denied(f"127.0.0.1:{port}")
    assert out["lookup"] == {"denied": False, "value": repr(resolved)}
    assert out["after"] == {"denied": False, "value": repr(port)}
    assert out["other_port"] == denied(f"127.0.0.1:{port + 1}")
    assert out["dropped"] == denied(f"127.0.0.1:{port}")
    assert accepted(server) == 1


@pytest.fixture
def unix_server() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="pp-")  # short: AF_UNIX paths are limited to ~108 bytes
    path = f"{folder}/s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen()
    yield sock, path
    sock.close()


def test_unix_socket_path_granted_or_not(
    enforced: Any, unix_server: tuple[socket.socket, str]
) -> None:
    server, path = unix_server
    code = f"""
        import socket
        attempt("connect", lambda: socket.socket(socket.AF_UNIX).connect({path!r}))
        attempt("abstract", lambda: socket.socket(socket.AF_UNIX).bind(b"\\0pp-test"))
        """
    out = enforced(code, {"net": ["/run/other.sock"]})
    assert out["connect"] == denied(path)
    assert out["abstract"] == denied("@pp-test")
    assert accepted(server) == 0

    out = enforced(code, {"net": [path]})
    assert out["connect"] == {"denied": False, "value": "None"}
    assert accepted(server) == 1
