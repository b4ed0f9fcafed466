"""The listening socket a serving process binds itself (before uvicorn starts on it).

Binding here, in the transport layer, lets the supervisor reserve the port and every worker listen on it
(``SO_REUSEPORT``: one accept queue each, the kernel spreading new connections) without either importing the
server that will run on it.
"""

from __future__ import annotations

import socket


def bind_socket(host: str, port: int, *, reuse_port: bool, listen: bool = True, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv4 or IPv6), listening unless ``listen`` is False.

    With ``reuse_port`` every process that binds the same address with ``SO_REUSEPORT`` (same user) gets its own
    accept queue and the kernel spreads new connections over the listening ones.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listen:
            sock.listen(backlog)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock
