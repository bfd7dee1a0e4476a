"""Free local ports for the servers our tools and tests start (Kamailio, baresip, swtpm, QEMU's
console socket)."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 now, chosen BELOW the kernel's ephemeral range: a port the kernel
    handed out (bind to 0) can be taken again by any outgoing connection before the server that
    was meant to get it binds, which made baresip fail with "Address already in use"."""
    lo, _ = _ephemeral_range()
    top = max(lo - 2, 12000)
    for _ in range(200):
        p = random.randrange(10000, top)
        if p in _handed_out or p + 1 in _handed_out:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _handed_out.add(p)
        return p
    raise OSError("no free port below the ephemeral range")


def reserve(port: int) -> None:
    """Do not hand `port` out again in this process (e.g. baresip's TLS port P+1)."""
    _handed_out.add(port)
