"""Which process listens on a loopback port: the readiness test for spawned servers.

``free_port`` hands out a port that was free a moment ago; until the spawned server
binds it, another test worker may take it. A connect then succeeds against the wrong
process (a server that died at start looked started). So readiness is "this pid owns a
listening socket on this port", read from ``/proc`` (Linux, where these tests run):
the socket inodes in ``/proc/<pid>/fd`` against the LISTEN rows of ``/proc/net/tcp``
and ``tcp6``.
"""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone, or not ours to read
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXIP:HEXPORT; st is the 4th column; inode the 10th.
            if len(fields) > 9 and fields[3] == _LISTEN \
                    and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def process_listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port``."""
    mine = _socket_inodes(pid)
    return bool(mine) and not mine.isdisjoint(_listening_inodes(port))
