import socket

import pytest

from tests.conftest import NetworkBlocked


def test_connect_is_blocked():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(NetworkBlocked):
        s.connect(("127.0.0.1", 9))
    s.close()


def test_dns_is_blocked():
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("example.com", 443)
