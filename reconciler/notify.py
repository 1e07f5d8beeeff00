"""sd_notify: tell systemd READY/STATUS/WATCHDOG/STOPPING over $NOTIFY_SOCKET.

A no-op when the daemon does not run under systemd. Written by hand because the
protocol is one datagram per message; an abstract socket name starts with '@'.
"""
from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False
