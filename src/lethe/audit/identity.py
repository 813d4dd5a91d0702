"""Who and where, for audit entries: the OS user and host unless an API key or worker says."""

from __future__ import annotations

import getpass
import socket


def local_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def local_source() -> str:
    return socket.gethostname()
