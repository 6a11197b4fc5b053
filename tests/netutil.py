"""Socket helpers shared by the back-pressure tests (integration and security)."""

from __future__ import annotations

import asyncio
import socket

#: Kernel buffer size for back-pressure tests: Linux autotunes loopback buffers to
#: megabytes, so with defaults a peer must send hundreds of thousands of PDUs before
#: anything backs up; at 4 KiB a few thousand do.
SMALL_BUFFER = 4096


def shrink_buffers(sock: socket.socket) -> None:
    """Set both kernel buffers of ``sock`` to :data:`SMALL_BUFFER`."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)


async def connect_small_buffers(address: tuple[str, int], timeout: float) -> socket.socket:
    """A non-blocking TCP socket with small buffers, connected to ``address``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    shrink_buffers(sock)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, address), timeout)
    except BaseException:
        sock.close()
        raise
    return sock
