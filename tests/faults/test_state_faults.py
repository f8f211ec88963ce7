"""Case 5: the state file read-only, on a full disk, or corrupt.

Each test commits work first (open sessions, and requests Matomo has not taken yet: it answers
503 meanwhile), then injects the fault. audimeter must stop with exit status 1 and one clear
line, never a traceback; once the fault is removed, a restart must carry on from what was
committed: sessions continue (one start each), queued requests are delivered, listeners who
joined while it was stopped are found. Lost: nothing. Duplicates: none (Matomo stored nothing
of the refused batches).

As root (CI), chmod does not stop writes: read-only is made with `chattr +i` (the directory,
the database and its WAL; not the `-shm` index, which SQLite maps into memory: an immutable
mapped file kills the writer with SIGBUS, which is how the method fails, not the program). A
full disk is a small tmpfs (root only) and, for anyone, RLIMIT_FSIZE on the daemon, which makes
its writes past the limit fail with EFBIG.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.audimeter import wait_for
from tests.support.faults import (
    MATOMO_BACKLOG,
    PLAYERS,
    Audience,
    Daemon,
    check_delivery,
    state_rows,
    traceback_free,
    write_config,
)
from tests.support.matomo import RecordingMatomo
from tests.support.shoutcast import Dnas2Emulator

from .conftest import Figures

ROOT = os.geteuid() == 0


@dataclass
class Bench:
    """A daemon that has committed work: two listeners on, one gone, requests queued."""

    tmp_path: Path
    dnas: Dnas2Emulator
    matomo: RecordingMatomo
    audience: Audience
    config: Path
    daemon: Daemon

    @property
    def state_dir(self) -> Path:
        return self.tmp_path / "state"

    @property
    def db(self) -> Path:
        return self.state_dir / "audimeter.db"

    def sessions(self) -> set[str]:
        return {str(r[0]) for r in state_rows(self.db, "SELECT client_id FROM sessions")}

    def crash(self) -> None:
        """Kill the daemon and fold its WAL into the state file, as SQLite's next open would.

        (A clean stop would spend its 5 s shutdown drain on the failing Matomo.)
        """
        self.daemon.stop(signal.SIGKILL)
        db = sqlite3.connect(self.db)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
        # The WAL is folded in; the send lock's file (empty, never read) stays beside the state.
        left = sorted(p.name for p in self.state_dir.iterdir())
        assert left == ["audimeter.db", "audimeter.db.lock"]

    def polled_since(self, at: int) -> bool:
        rows = state_rows(self.db, "SELECT min(last_seen) FROM mounts")
        return bool(rows) and rows[0][0] is not None and int(str(rows[0][0])) >= at

    def failed_with_one_line(self, daemon: Daemon, offset: int = 0) -> str:
        """Wait for `daemon` to stop on its own; assert status 1 and a one-line error."""
        code = daemon.exited(15)
        line = traceback_free(daemon.log_since(offset))
        assert code == 1, daemon.logs()
        assert " ERROR " in line, line
        assert str(self.db) in line, line
        return line

    def recover_and_finish(self, figures: Figures, fault: str, line: str) -> None:
        """Restart without the fault; let everyone leave; check what Matomo got."""
        self.matomo.recover()
        restarted = int(time.time())
        with Daemon(self.config) as daemon:
            self.daemon = daemon
            # A poll of the restarted daemon saw everyone still there (or they would end at
            # their last sighting before the fault, which is right, but not what is tested).
            wait_for(
                lambda: (
                    self.polled_since(restarted + 1)
                    and {str(u) for u in self.audience.connected()} <= self.sessions()
                ),
                10,
                "a poll after the restart, with every listener in the state file",
            )
            self.audience.leave_all()
            wait_for(
                lambda: (
                    not self.sessions()
                    and state_rows(
                        self.db,
                        MATOMO_BACKLOG,
                    )[0][0]
                    == 0
                ),
                20,
                "every session ended and delivered",
            )
            code, _ = daemon.stop()
        assert code == 0
        report = check_delivery(self.audience.seen, self.matomo.requests, end_slack=8)
        assert report.duplicates == 0
        figures(f"{report.line()}; {fault}: {line.split(' ERROR ', 1)[1].strip()!r}")


@contextmanager
def bench(tmp_path: Path, state_dir: Callable[[Path], object] | None = None) -> Iterator[Bench]:
    """Run the daemon until it has committed sessions and queued requests Matomo refused."""
    with Dnas2Emulator(streams={1: "/stream"}) as dnas, RecordingMatomo() as matomo:
        if state_dir is not None:
            state_dir(tmp_path / "state")
        config = write_config(tmp_path, source_url=dnas.url, matomo_url=matomo.url)
        audience = Audience(dnas)
        daemon = Daemon(config).start()
        b = Bench(tmp_path, dnas, matomo, audience, config, daemon)
        try:
            first = audience.join(PLAYERS[0])
            audience.join(PLAYERS[1])
            wait_for(lambda: len(matomo.requests) == 2, 10, "two starts delivered")
            matomo.fail_with(503)
            third = audience.join(PLAYERS[2])
            audience.leave(first)
            wait_for(
                lambda: str(third) in b.sessions() and str(first) not in b.sessions(),
                10,
                "the third start and the first end committed",
            )
            yield b
        finally:
            if b.daemon.running:
                b.daemon.stop(signal.SIGKILL)


# -- making files unwritable, also for root ------------------------------------------------------


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextmanager
def unwritable(paths: list[Path]) -> Iterator[None]:
    """The paths cannot be written: `chattr +i` for root, permissions for anyone else."""
    if ROOT:
        if shutil.which("chattr") is None:
            pytest.skip("running as root, where chmod does not stop writes, and chattr is missing")
        try:
            _chattr("+i", paths)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"running as root and chattr +i fails here: {exc.stderr.decode().strip()}")
        try:
            yield
        finally:
            _chattr("-i", paths)
        return
    modes = {path: path.stat().st_mode for path in paths}
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_state_read_only_at_start(tmp_path: Path, figures: Figures) -> None:
    """audimeter stops; its state directory and file become read-only; it is started again.

    It must refuse at once (status 1, one line) and leave the file as it was; started again
    once writable, it resumes the committed sessions and delivers the queued requests.
    Lost: nothing. Duplicates: none.
    """
    with bench(tmp_path) as b:
        b.crash()
        files = sorted(b.state_dir.iterdir())
        before = {f: f.read_bytes() for f in files}
        with unwritable([b.state_dir, *files]):
            offset = len(b.daemon.logs())
            b.daemon.start()
            line = b.failed_with_one_line(b.daemon, offset)
        assert {f: f.read_bytes() for f in sorted(b.state_dir.iterdir())} == before
        b.recover_and_finish(figures, "read-only at start", line)


def test_read_only_state_error_says_it_cannot_be_written(tmp_path: Path) -> None:
    """The one line for a read-only state names the cause and does not advise discarding it
    (following that advice would lose the open sessions and the queued requests)."""
    with bench(tmp_path) as b:
        b.crash()
        with unwritable([b.state_dir, *b.state_dir.iterdir()]):
            offset = len(b.daemon.logs())
            b.daemon.start()
            line = b.failed_with_one_line(b.daemon, offset)
    assert "move it aside" not in line, line
    assert "start afresh" not in line, line
    assert any(word in line for word in ("write", "read-only", "permission")), line


@pytest.mark.skipif(
    not ROOT, reason="needs root for chattr +i; chmod does not stop writes to files already open"
)
def test_state_becomes_read_only_while_running(tmp_path: Path, figures: Figures) -> None:
    """The state directory, database and WAL become immutable under the running daemon.

    The next write fails: audimeter stops with status 1 and one line, rather than run on
    without a record; after the fault is removed, a restart loses nothing committed.
    Lost: nothing. Duplicates: none.
    """
    with bench(tmp_path) as b:
        paths = [b.state_dir, *(p for p in b.state_dir.iterdir() if not p.name.endswith("-shm"))]
        with unwritable(paths):
            b.audience.join(PLAYERS[3])  # a change to write
            line = b.failed_with_one_line(b.daemon)
        b.recover_and_finish(figures, "read-only while running", line)


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system refuses; its errno."""
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(bytes(65536))
        except OSError as exc:
            return exc.errno or 0


def test_disk_full_while_running(tmp_path: Path, figures: Figures) -> None:
    """The state lives on a 1 MiB tmpfs, which a filler file fills up under the daemon.

    The next write fails with ENOSPC: status 1 and one line; once space is freed, a restart
    loses nothing committed. Lost: nothing. Duplicates: none.
    """
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers a full disk")
    state = tmp_path / "state"
    try:
        with bench(tmp_path, _mount_tmpfs) as b:
            filler = state / "filler"
            assert fill(filler) == errno.ENOSPC
            b.audience.join(PLAYERS[3])
            line = b.failed_with_one_line(b.daemon)
            filler.unlink()
            b.recover_and_finish(figures, "disk full (tmpfs)", line)
    finally:
        subprocess.run(["umount", str(state)], capture_output=True, check=False)


def test_file_size_limit_while_running(tmp_path: Path, figures: Figures) -> None:
    """audimeter is started again under RLIMIT_FSIZE = 40 kB: its WAL soon cannot grow.

    Works for root and anyone: a write past the limit fails (EFBIG) like one on a full disk.
    The daemon commits a few polls, then stops with status 1 and one line; without the limit,
    a restart loses nothing committed. Lost: nothing. Duplicates: none.
    """
    with bench(tmp_path) as b:
        b.crash()
        limited = b.config.with_name("limited.toml")  # its own, small log file
        shutil.copy(b.config, limited)
        daemon = Daemon(limited, file_size_limit=40_000).start()
        try:
            b.audience.join(PLAYERS[3])
            line = b.failed_with_one_line(daemon)
        finally:
            if daemon.running:
                daemon.stop(signal.SIGKILL)
        b.recover_and_finish(figures, "writes past RLIMIT_FSIZE", line)


# -- a corrupt state file ------------------------------------------------------------------------


def corruptions(good: bytes) -> dict[str, bytes]:
    rng = random.Random(7)
    noise = rng.randbytes
    return {
        "garbage": noise(8192),
        "a valid header, then garbage": good[:100] + noise(len(good) - 100),
        "cut in half": good[: len(good) // 2 + 100],
    }


def test_corrupt_state_file_is_refused_and_left_untouched(tmp_path: Path, figures: Figures) -> None:
    """The state file is replaced by garbage, by a valid header and garbage, by half of it.

    Each time audimeter exits with status 1 and one line, and the file is byte for byte as it
    was (no WAL or index is created next to it). Once the good file is put back, nothing that
    was committed in it is lost. Lost: nothing. Duplicates: none.
    """
    with bench(tmp_path) as b:
        b.crash()
        good = b.db.read_bytes()
        lines = []
        for name, data in corruptions(good).items():
            b.db.write_bytes(data)
            offset = len(b.daemon.logs())
            b.daemon.start()
            lines.append(b.failed_with_one_line(b.daemon, offset))
            assert b.db.read_bytes() == data, f"{name}: the corrupt file was changed"
            left = sorted(p.name for p in b.state_dir.iterdir())
            assert left == ["audimeter.db", "audimeter.db.lock"], name
        b.db.write_bytes(good)
        b.recover_and_finish(figures, f"{len(lines)} corrupt files refused", lines[0])


def test_state_file_with_a_damaged_page_is_refused_in_one_line(tmp_path: Path) -> None:
    """One page of the `sessions` table overwritten with garbage: refused in one line, the
    file untouched (what it held is lost to audimeter until restored, not destroyed)."""
    with bench(tmp_path) as b:
        b.crash()
        db = sqlite3.connect(b.db)
        try:
            page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='sessions'")
        finally:
            db.close()
        good = bytearray(b.db.read_bytes())
        start = (int(root[0]) - 1) * page_size
        good[start : start + page_size] = random.Random(8).randbytes(page_size)
        damaged = bytes(good)
        b.db.write_bytes(damaged)
        digest = hashlib.sha256(damaged).hexdigest()
        offset = len(b.daemon.logs())
        b.daemon.start()
        b.failed_with_one_line(b.daemon, offset)
        assert hashlib.sha256(b.db.read_bytes()).hexdigest() == digest
