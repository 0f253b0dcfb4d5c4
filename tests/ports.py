"""Loopback ports for the servers the tests start (the app, llama.cpp's server)."""

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
