"""sd_notify for a Type=notify service: READY, STATUS, STOPPING, WATCHDOG.

:class:`Notifier` uses ``systemd.daemon.notify`` (systemd-python) when it is installed,
else sends the datagram itself (the protocol is one ``KEY=value`` line per assignment to
the unix socket named by ``$NOTIFY_SOCKET``; ``@`` means the abstract namespace). Without
``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing and returns False.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

Sender = Callable[[str], bool]


def _libsystemd_sender() -> Sender | None:
    try:
        import systemd.daemon as daemon
    except ImportError:
        return None

    def send(message: str) -> bool:
        return bool(daemon.notify(message))

    return send


def send_datagram(message: str) -> bool:
    """Send ``message`` to ``$NOTIFY_SOCKET`` without libsystemd; False if there is none."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    """Tell the service manager how the service is doing.

    ``use_libsystemd=False`` forces the built-in sender (tests use both).
    """

    def __init__(self, *, use_libsystemd: bool = True) -> None:
        sender = _libsystemd_sender() if use_libsystemd else None
        self._send: Sender = sender or send_datagram

    @property
    def enabled(self) -> bool:
        """True when started by a service manager that listens (``$NOTIFY_SOCKET`` is set)."""
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def notify(self, *assignments: str) -> bool:
        """Send raw ``KEY=value`` assignments; False when there is no one to tell."""
        if not self.enabled or not assignments:
            return False
        return self._send("\n".join(assignments))

    def ready(self, status: str = "") -> bool:
        """Start-up is done: the bus name is owned and the service answers calls."""
        return self.notify("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """A one-line status for ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str = "") -> bool:
        """Shutdown has begun (thawing, aborting sessions)."""
        return self.notify("STOPPING=1", *self._status(status))

    def watchdog(self) -> bool:
        """Keep-alive for ``WatchdogSec=``."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start or stop timeout (e.g. while thawing)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    @staticmethod
    def _status(text: str) -> tuple[str, ...]:
        return (f"STATUS={_one_line(text)}",) if text else ()
