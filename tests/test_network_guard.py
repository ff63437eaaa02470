import socket

import pytest

from tests.conftest import NetworkBlocked


def test_connect_to_another_host_is_blocked():
    for family, address in ((socket.AF_INET, ("10.0.0.1", 9)), (socket.AF_INET, ("192.0.2.1", 80)),
                            (socket.AF_INET6, ("2001:db8::1", 443, 0, 0))):
        s = socket.socket(family, socket.SOCK_STREAM)
        with pytest.raises(NetworkBlocked):
            s.connect(address)
        with pytest.raises(NetworkBlocked):
            s.connect_ex(address)
        s.close()


def test_create_connection_to_another_host_is_blocked():
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("example.com", 80), timeout=1)


def test_dns_is_blocked():
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("localhost", 443)  # even a name that would resolve to loopback asks a resolver
    with pytest.raises(NetworkBlocked):
        socket.gethostbyname("example.com")


def test_loopback_connects():
    """The one exception: a server this test started on 127.0.0.1 (the ComfyUI integration tests)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    accepted, _ = server.accept()
    client.sendall(b"ping")
    assert accepted.recv(4) == b"ping"
    for s in (client, accepted, server):
        s.close()
