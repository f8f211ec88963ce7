"""Run the real `audimeter` command as a child process, the way an operator runs it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def receiving(port: int, state: Path, mount: str) -> bool:
    """The webhook receiver accepts connections and `mount` has been polled: a listener_add
    for it now names a mount audimeter knows (one for a mount never polled waits for the poll,
    which finds the listener without its query string)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    if not state.exists():
        return False
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return bool(db.execute("SELECT 1 FROM mounts WHERE mount = ?", (mount,)).fetchone())
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


class AudimeterProcess:
    """`audimeter run --config FILE` in a child process with its output kept in files."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.config = config
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.stdout_path = config.with_suffix(".stdout")
        self.stderr_path = config.with_suffix(".stderr")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "audimeter",
                    "run",
                    "--config",
                    str(self.config),
                    *self.args,
                ],
                stdout=out,
                stderr=err,
                env=self.env,
            )
        return self

    def send(self, sig: int) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send `sig`; return the exit status and how long the exit took."""
        assert self._proc is not None
        started = time.monotonic()
        self._proc.send_signal(sig)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise AssertionError(
                f"audimeter did not exit within {timeout} s of signal {sig}"
            ) from None
        finally:
            self._proc = None
        return code, time.monotonic() - started

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if exc is not None:
            sys.stderr.write(f"--- audimeter log ---\n{self.logs()}\n")
