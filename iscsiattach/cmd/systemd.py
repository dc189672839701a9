"""sd_notify without a dependency: READY, WATCHDOG, STOPPING, STATUS."""
from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` to systemd if it is listening; False otherwise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]       # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds, when systemd asks for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() else None
