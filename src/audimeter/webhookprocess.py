"""The webhook receiver in a process of its own, so that no work of the daemon delays an answer.

Why a process: Icecast holds each listener until the receiver answers. In a thread of the
daemon's process the answer still waited for the interpreter lock, which the daemon's Python
code (a 100,000-listener poll parsed and sessionized, 100-300 ms at a stretch) hands over only
every few milliseconds, several times per request, and its C code (lxml building a tree, a
regular expression over a listing) only when done: on a quiet machine p99 up to 56 ms in steady
polls, 76 ms beside an import and 350 ms in the first poll's 100,000 session starts
(benchmarks/bench_webhook.py).

How the two processes talk: the daemon starts `python -m audimeter.webhookprocess` and writes
the settings as one JSON line to its stdin, which then stays open: its end (the daemon's `stop`,
or the daemon killed) stops the receiver, which lets requests in progress finish. The child
ignores SIGINT, SIGTERM and SIGHUP (a terminal's Ctrl-C and systemd's stop reach every process
of the group), so that the daemon decides when it stops: after its own loop, before the last
inbox drain. The child writes JSON lines to its stdout: once `{"listening": port}` or
`{"error": "..."}`, then `{"counts": [...]}` (the receiver's counters, with `"notice": true`
when a notice was just recorded, which wakes the daemon) and `{"log": [level, logger,
message]}`, records the daemon logs as its own. The notices themselves go through the inbox
file (audimeter.inbox), which the child writes through a connection of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any, NamedTuple

from pydantic import SecretStr

from audimeter.config import WebhookConfig
from audimeter.inbox import Inbox
from audimeter.store import StoreError
from audimeter.webhook import WebhookError, WebhookReceiver

log = logging.getLogger("audimeter.webhook")

STOP_SECONDS = 10.0
"""How long `stop` waits for the child: its receiver lets requests finish for 2 s at most."""


class ReceiverCounts(NamedTuple):
    """The receiver's counters (see `WebhookReceiver`), read together."""

    received: int = 0
    recorded: int = 0
    failed: int = 0
    refused: int = 0


class ReceiverProcess:
    """A `WebhookReceiver` in a child process, writing to the inbox file at `inbox`.

    `notify` is called from a thread of this process whenever the child recorded a notice: it
    must hand over to the daemon's loop thread-safely. `counts` is the child's latest counters.
    """

    def __init__(
        self,
        config: WebhookConfig,
        sources: Collection[str],
        inbox: Path,
        notify: Callable[[], object],
    ) -> None:
        self._config = config
        self._sources = sorted(sources)
        self._inbox = inbox
        self._notify = notify
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._port: int | None = None
        self.counts = ReceiverCounts()
        self.ended: str | None = None
        """Why the child ended while it should run; None while it runs."""

    @property
    def port(self) -> int:
        """The TCP port the receiver listens on (the real one when configured with port 0)."""
        if self._port is None:
            raise RuntimeError("the webhook receiver is not started")
        return self._port

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (`ps` shows it as `audimeter.webhookprocess`)."""
        return None if self._child is None else self._child.pid

    def start(self) -> None:
        """Start the child; returns once it listens. `WebhookError` if it cannot."""
        if self._child is not None:
            raise RuntimeError("the webhook receiver is already started")
        config = self._config
        settings = {
            "listen": config.listen,
            "username": config.username,
            "password": config.password.get_secret_value(),
            "max_body": config.max_body,
            "sources": self._sources,
            "inbox": str(self._inbox),
            "level": log.getEffectiveLevel(),
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "audimeter.webhookprocess"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            # The password goes through the pipe: never in the command line or environment.
            child.stdin.write(json.dumps(settings).encode() + b"\n")
            child.stdin.flush()
            self._port = self._await_listening(child.stdout)
        except BaseException:
            self._end(child)
            raise
        self._child = child
        self._reader = threading.Thread(
            target=self._read, args=(child.stdout,), name="audimeter-webhook-reader", daemon=True
        )
        self._reader.start()

    def _await_listening(self, out: IO[bytes]) -> int:
        for line in out:
            message = json.loads(line)
            if "listening" in message:
                return int(message["listening"])
            if "error" in message:
                raise WebhookError(str(message["error"]))
            self._take(message)
        raise WebhookError(
            "webhook: the receiver's process ended as it started; its error is above"
        )

    def stop(self) -> None:
        """Stop listening, let requests in progress finish (2 s at most), end the child."""
        child, reader = self._child, self._reader
        self._child = self._reader = None
        self._port = None
        if child is None or reader is None:
            return
        self._stopping = True
        self._end(child)
        reader.join(STOP_SECONDS)

    @staticmethod
    def _end(child: subprocess.Popen[bytes]) -> None:
        assert child.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()  # the child's signal to stop
        try:
            child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            with contextlib.suppress(ValueError):  # the last line of a child killed mid-write
                self._take(json.loads(line))
        if not self._stopping:
            self.ended = "webhook: the receiver's process ended unexpectedly; see the lines above"
            self._notify()

    def _take(self, message: dict[str, Any]) -> None:
        if "counts" in message:
            self.counts = ReceiverCounts(*message["counts"])
            if message.get("notice"):
                self._notify()
        elif "log" in message:
            level, name, text = message["log"]
            logging.getLogger(name).log(level, "%s", text)

    def check(self) -> None:
        """Raise `WebhookError` if the child ended while it should run."""
        if self.ended is not None:
            raise WebhookError(self.ended)


# -- the child ------------------------------------------------------------------------------------


class _Outbox:
    """The child's messages to the daemon, queued from any thread, written by the main one: a
    daemon slow to read never holds up an answer."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()

    def send(self, **message: Any) -> None:
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(None)

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None when closed; `queue.Empty` after `timeout` s without one."""
        return self._queue.get(timeout=timeout)


class _Forward(logging.Handler):
    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self._outbox.send(log=[record.levelno, record.name, text])


def _child() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    # The messages get stdout's pipe to themselves: a stray print goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)

    def write(message: dict[str, Any]) -> None:
        with contextlib.suppress(BrokenPipeError):  # the daemon is gone: nobody to tell
            out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    settings = json.loads(sys.stdin.buffer.readline())
    outbox = _Outbox()
    root = logging.getLogger()
    root.addHandler(_Forward(outbox))
    root.setLevel(settings["level"])
    config = WebhookConfig.model_construct(
        listen=settings["listen"],
        username=settings["username"],
        password=SecretStr(settings["password"]),
        max_body=settings["max_body"],
    )
    try:
        inbox = Inbox.open(Path(settings["inbox"]))
    except StoreError as exc:
        write({"error": str(exc)})
        return

    def counts() -> ReceiverCounts:
        return ReceiverCounts(
            receiver.received, receiver.recorded, receiver.failed, receiver.refused
        )

    receiver = WebhookReceiver(
        config,
        settings["sources"],
        inbox.append,
        lambda: outbox.send(counts=counts(), notice=True),
    )
    try:
        receiver.start()
    except WebhookError as exc:
        write({"error": str(exc)})
        inbox.close()
        return
    with contextlib.suppress(queue.Empty):
        while message := outbox.get(timeout=0):  # its start's log lines before the banner
            write(message)
    write({"listening": receiver.port})

    def await_stop() -> None:
        sys.stdin.buffer.read()  # its end: the daemon's stop, or its death
        outbox.close()

    threading.Thread(target=await_stop, daemon=True).start()
    sent = ReceiverCounts()
    try:
        while True:
            try:
                message = outbox.get(timeout=1.0)
            except queue.Empty:  # refusals and failures wake nobody: counted within 1 s
                message = {"counts": counts()}
            if message is None:
                break
            if "counts" in message:
                if message["counts"] == sent and not message.get("notice"):
                    continue
                sent = message["counts"]
            write(message)
    finally:
        receiver.stop()
        inbox.close()
        outbox.close()
        while (message := outbox.get(timeout=0)) is not None:
            write(message)
        write({"counts": counts()})


if __name__ == "__main__":
    _child()
