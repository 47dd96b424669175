"""This process's netfilter netlink socket (nftables and conntrack requests share it).

Kept open for the life of the process on purpose: while the kernel still has objects of a
committed nftables deletion to free (an RCU grace period after the commit, 7 to 20 ms here),
closing any netfilter netlink socket waits for that. A socket per request would pay it on
the first close after each container's removal; this one pays it at most once, at exit.
"""

from __future__ import annotations

import os
import socket
import threading

NETLINK_NETFILTER = 12


class ProcessSocket:
    """The socket, used by one thread at a time (`with SOCKET as sock:`). A fork gets one of
    its own: two processes sharing one could read each other's answers. A request that
    failed half-way closes it (unread answers may be left in it); the next opens another."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._pid = 0
        self._mutex = threading.Lock()

    def __enter__(self) -> socket.socket:
        if self._pid != os.getpid():  # a fork: the parent's socket and mutex are not ours
            if self._sock is not None:  # dropped without a close: a monitor closed the fds it
                self._sock.detach()     # inherited, and the number may be another fd by now
            self._sock, self._mutex = None, threading.Lock()
        self._mutex.acquire()
        try:
            if self._sock is None:
                self._sock = _open_socket()
                self._pid = os.getpid()
        except BaseException:
            self._mutex.release()
            raise
        return self._sock

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None and self._sock is not None:  # unread answers may be left in it
            self._sock.close()
            self._sock = None
        self._mutex.release()


def _open_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_NETFILTER)
    except OSError as exc:
        raise OSError(exc.errno, f"no netfilter netlink socket: {exc.strerror}") from None
    sock.bind((0, 0))
    return sock


SOCKET = ProcessSocket()
