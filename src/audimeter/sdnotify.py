"""systemd's notify protocol for `Type=notify` units: READY, WATCHDOG and STATUS.

A message is a datagram of `KEY=value` lines sent to the AF_UNIX socket named by
`NOTIFY_SOCKET` (a name starting with "@" is in the abstract namespace). Outside systemd the
variable is unset and nothing is sent. Failures to send are logged once, never raised: the
daemon's work does not depend on its supervisor hearing about it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

STATUS_INTERVAL = 5.0
"""Seconds between two STATUS lines."""


class Notifier:
    def __init__(self, address: str, watchdog: float | None = None) -> None:
        """`address` as in NOTIFY_SOCKET; `watchdog`: seconds between WATCHDOG pings, if any."""
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog = watchdog
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier | None:
        """The notifier systemd asks for, None when not started by systemd as Type=notify.

        The watchdog applies when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this
        process; pings go at half the interval, as sd_watchdog_enabled(3) advises.
        """
        address = environ.get("NOTIFY_SOCKET", "")
        if not address or address[0] not in "/@":
            return None
        watchdog = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec) / 2e6
        return cls(address, watchdog)

    def send(self, **fields: str) -> None:
        """Send `KEY=value` lines, e.g. send(READY="1", STATUS="...")."""
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd: cannot notify %s (%s)", self._address.lstrip("\0"), exc)
            self._failed = True
        else:
            self._failed = False

    def close(self) -> None:
        self._socket.close()


class Heartbeat:
    """What the main loop tells systemd at each round: READY=1 once `ready()` is true,
    WATCHDOG=1 every half watchdog interval, and a STATUS line every few seconds.

    Pings come from the loop's rounds only, so they stop when the loop stalls and systemd's
    watchdog restarts the daemon.
    """

    def __init__(
        self,
        notifier: Notifier,
        ready: Callable[[], bool],
        status: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._ready = ready
        self._status = status
        self._clock = clock
        self.readied = False
        self._pinged_at = -float("inf")
        self._status_at = -float("inf")

    def __call__(self) -> None:
        now = self._clock()
        fields: dict[str, str] = {}
        if not self.readied and self._ready():
            self.readied = True
            fields["READY"] = "1"
        interval = self._notifier.watchdog
        if interval is not None and now - self._pinged_at >= interval:
            self._pinged_at = now
            fields["WATCHDOG"] = "1"
        if fields.get("READY") or now - self._status_at >= STATUS_INTERVAL:
            self._status_at = now
            fields["STATUS"] = self._status()
        if fields:
            self._notifier.send(**fields)

    def stopping(self) -> None:
        self._notifier.send(STOPPING="1", STATUS="stopping")
