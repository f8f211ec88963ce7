"""Following an access log: where reading starts, partial lines, rotations, odd input."""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audimeter.observations import LogPosition
from audimeter.sources import tailer as tailer_module
from audimeter.sources.tailer import LogTailer, TailError


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def inode(path: Path) -> int:
    return path.stat().st_ino


def started(path: Path, **limits: int) -> LogTailer:
    """A tailer on its first start that has done its first read, which is when it opens the file."""
    tailer = LogTailer("main", path, None, **limits)
    assert tailer.read()[0] == []
    return tailer


# -- where reading starts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        # First start: the lines already there are for `audimeter import`.
        pytest.param(None, [], id="first-start-at-end"),
        pytest.param("same-inode-offset-2", ["b", "c"], id="resume-at-offset"),
        pytest.param("same-inode-offset-0", ["a", "b", "c"], id="resume-at-start"),
        pytest.param("same-inode-at-end", [], id="resume-at-end"),
        pytest.param("same-inode-past-end", ["a", "b", "c"], id="truncated-while-stopped"),
        pytest.param("other-inode", ["a", "b", "c"], id="rotated-while-stopped"),
    ],
)
def test_where_reading_starts(tmp_path: Path, stored: str | None, expected: list[str]) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"a\nb\nc\n")
    position = {
        None: None,
        "same-inode-offset-2": LogPosition("main", str(path), inode(path), 2),
        "same-inode-offset-0": LogPosition("main", str(path), inode(path), 0),
        "same-inode-at-end": LogPosition("main", str(path), inode(path), 6),
        "same-inode-past-end": LogPosition("main", str(path), inode(path), 600),
        "other-inode": LogPosition("main", str(path), inode(path) + 1, 4),
    }[stored]
    with LogTailer("main", path, position) as tailer:
        lines, after = tailer.read()
        assert lines == expected
        assert after == LogPosition("main", str(path), inode(path), 6)
        append(path, b"d\n")
        assert tailer.read() == (["d"], LogPosition("main", str(path), inode(path), 8))


def test_first_start_waits_for_the_unfinished_last_line(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"old\nhalf a li")
    with started(path) as tailer:
        assert tailer.position.offset == 4
        append(path, b"ne\nnew\n")
        assert tailer.read()[0] == ["half a line", "new"]


def test_first_start_skips_an_unfinished_last_line_already_too_long(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"old\n" + b"x" * 50)
    with started(path, max_line=10) as tailer:
        append(path, b"xxx\nnew\n")
        assert tailer.read()[0] == ["new"]
        assert tailer.skipped_long_lines == 1


def test_a_file_created_after_the_start_is_read_from_its_beginning(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with LogTailer("main", path, None) as tailer:
        for _ in range(3):
            assert tailer.read() == ([], LogPosition("main", str(path), 0, 0))
        path.write_bytes(b"first\n")
        assert tailer.read() == (["first"], LogPosition("main", str(path), inode(path), 6))


def test_a_position_saved_before_the_file_existed_reads_it_from_its_beginning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "access.log"
    with LogTailer("main", path, None) as tailer:
        _, saved = tailer.read()
    path.write_bytes(b"first\n")
    with LogTailer("main", path, saved) as tailer:
        assert tailer.read()[0] == ["first"]


# -- lines --------------------------------------------------------------------------------------


def test_a_partial_line_is_returned_once_its_newline_is_written(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.touch()
    with started(path) as tailer:
        steps = [
            (b"one\ntw", ["one"], 4),
            (b"", [], 4),
            (b"o", [], 4),
            (b"\nthree\n", ["two", "three"], 14),
            (b"\n", [""], 15),
        ]
        for written, lines, offset in steps:
            append(path, written)
            assert tailer.read() == (lines, LogPosition("main", str(path), inode(path), offset))


def test_a_restart_reads_the_partial_line_again(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.touch()
    with started(path) as tailer:
        append(path, b"one\ntw")
        _, saved = tailer.read()
    append(path, b"o\n")
    with LogTailer("main", path, saved) as tailer:
        assert tailer.read()[0] == ["two"]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param(b"caf\xe9 \xff\xfe\n", ["caf\ufffd \ufffd\ufffd"], id="latin-1"),
        pytest.param("Mozilla/5.0 (Linux; Android) — ü\n".encode(), None, id="utf-8"),
        pytest.param(b"\xe2\x82", [], id="cut-utf-8-waits"),
        pytest.param(b"windows\r\nunix\n", ["windows", "unix"], id="crlf"),
        pytest.param(b"a\n\nb\n", ["a", "", "b"], id="empty-line"),
    ],
)
def test_decoding(tmp_path: Path, written: bytes, expected: list[str] | None) -> None:
    path = tmp_path / "access.log"
    path.touch()
    with started(path) as tailer:
        append(path, written)
        lines = tailer.read()[0]
        assert lines == (expected if expected is not None else [written.decode()[:-1]])


@pytest.mark.parametrize(
    ("length", "kept"),
    [(0, True), (1, True), (9, True), (10, True), (11, False), (1000, False)],
)
def test_line_length_limit(tmp_path: Path, length: int, kept: bool) -> None:
    path = tmp_path / "access.log"
    path.touch()
    with started(path, max_line=10, max_read=4) as tailer:
        append(path, b"before\n" + b"x" * length + b"\nafter\n")
        lines = []
        for _ in range(length + 20):
            lines += tailer.read()[0]
        assert lines == ["before", *(["x" * length] if kept else []), "after"]
        assert tailer.skipped_long_lines == (0 if kept else 1)


def test_a_long_line_is_never_held_and_the_offset_waits_before_it(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.touch()
    with started(path, max_line=100, max_read=1000) as tailer:
        append(path, b"ok\n")
        assert tailer.read()[0] == ["ok"]
        for _ in range(50):
            append(path, b"y" * 1000)
            assert tailer.read() == ([], LogPosition("main", str(path), inode(path), 3))
            assert len(tailer._pending) <= 100
        append(path, b"\nnext\n")
        assert tailer.read()[0] == ["next"]
        assert tailer.skipped_long_lines == 1
        assert tailer.position.offset == path.stat().st_size


def test_a_read_takes_at_most_max_read_bytes(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.touch()
    with started(path, max_read=12) as tailer:
        append(path, b"".join(b"line %02d\n" % i for i in range(10)))
        lines: list[str] = []
        calls = 0
        while tailer.position.offset < 80:
            batch, position = tailer.read()
            calls += 1
            lines += batch
            # What a call hands out was read by it and the calls before it.
            assert position.offset <= 12 * calls
            assert len(batch) <= 2
        assert lines == [f"line {i:02d}" for i in range(10)]
        assert calls == 7


# -- rotation -----------------------------------------------------------------------------------


def test_rename_rotation_drains_the_old_file_before_switching(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    path.write_bytes(b"")
    with started(path) as tailer, path.open("ab", buffering=0) as writer:
        writer.write(b"1\n")
        assert tailer.read()[0] == ["1"]
        old = inode(path)

        path.rename(rotated)  # logrotate: rename, ...
        writer.write(b"2\n")  # the server still writes to the old file
        assert tailer.read() == (["2"], LogPosition("main", str(path), old, 4))
        path.touch()  # ... create the new file empty, ...
        writer.write(b"3\n")
        assert tailer.read() == (["3"], LogPosition("main", str(path), old, 6))
        writer.write(b"4\n")  # written before the server reopens, read after it has

        with path.open("ab", buffering=0) as reopened:  # ... and signal the server
            reopened.write(b"5\n")
            assert tailer.read() == (["4", "5"], LogPosition("main", str(path), inode(path), 2))
            reopened.write(b"6\n")
            assert tailer.read()[0] == ["6"]


def test_icecast_logsize_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    with started(path) as tailer:
        append(path, b"a\n")
        assert tailer.read()[0] == ["a"]
        append(path, b"b\n")
        path.rename(tmp_path / "access.log.20240501_120000")
        append(path, b"c\n")
        assert tailer.read()[0] == ["b", "c"]
        assert tailer.position == LogPosition("main", str(path), inode(path), 2)


def test_the_unfinished_last_line_of_a_rotated_file_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    with started(path) as tailer:
        append(path, b"a\ncut sho")
        path.rename(tmp_path / "access.log.1")
        append(path, b"new\n")
        assert tailer.read()[0] == ["a", "new"]


def test_copytruncate(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    with started(path) as tailer:
        append(path, b"a long first line\nanother one\n")
        assert tailer.read()[0] == ["a long first line", "another one"]
        (tmp_path / "access.log.1").write_bytes(path.read_bytes())
        os.truncate(path, 0)
        append(path, b"short\n")
        assert tailer.read() == (["short"], LogPosition("main", str(path), inode(path), 6))


def test_a_missing_file_is_waited_for_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    with started(path) as tailer:
        append(path, b"a\n")
        path.rename(tmp_path / "access.log.1")  # rotation with logrotate's nocreate
        assert tailer.read()[0] == ["a"]
        assert tailer.read()[0] == []
        path.write_bytes(b"b\n")
        assert tailer.read()[0] == ["b"]


# -- failures -----------------------------------------------------------------------------------


def test_an_unreadable_path_raises_once_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.mkdir()
    tailer = LogTailer("main", path, None)
    for _ in range(2):
        with pytest.raises(TailError, match=r"access\.log .*access_log"):
            tailer.read()
    path.rmdir()
    path.write_bytes(b"a\n")
    assert tailer.read()[0] == []  # it existed at the start: reading begins at its end
    append(path, b"b\n")
    assert tailer.read()[0] == ["b"]
    tailer.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_permission_denied_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"a\n")
    path.chmod(0)
    tailer = LogTailer("main", path, None)
    for _ in range(2):
        with pytest.raises(TailError, match="read access"):
            tailer.read()
    path.chmod(0o644)
    append(path, b"b\n")
    assert tailer.read()[0] == []  # the file existed at the start: reading begins at its end
    append(path, b"c\n")
    assert tailer.read()[0] == ["c"]
    tailer.close()


def test_permission_denied_is_raised_until_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"a\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tailer_module, "open", refuse, raising=False)
    tailer = LogTailer("main", path, None)
    with pytest.raises(TailError, match=r"Permission denied.*read access") as raised:
        tailer.read()
    assert str(path) in str(raised.value)
    for _ in range(3):
        with pytest.raises(TailError, match=r"Permission denied.*read access"):
            tailer.read()
    monkeypatch.undo()
    append(path, b"b\n")
    assert tailer.read()[0] == []
    append(path, b"c\n")
    assert tailer.read()[0] == ["c"]
    tailer.close()


def test_close(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    tailer = started(path)
    tailer.close()
    tailer.close()
    with pytest.raises(ValueError, match="closed"):
        tailer.read()


# -- property: every line written is read exactly once, in order ----------------------------------

ACTIONS = ["read", "read", "rename", "rename-and-create", "reopen", "restart", "nothing"]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=st.data(),
    lines=st.lists(
        st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=24),
        max_size=40,
    ),
    max_line=st.sampled_from([8, 20, 1000]),
    max_read=st.sampled_from([1, 3, 16, 1 << 20]),
    exists_at_start=st.booleans(),
)
def test_reading_all_the_time_yields_every_line_once(
    data: st.DataObject,
    lines: list[str],
    max_line: int,
    max_read: int,
    exists_at_start: bool,
) -> None:
    stream = b"".join(line.encode() + b"\n" for line in lines)
    line_ends = {0}
    for line in lines:
        line_ends.add(max(line_ends) + len(line.encode()) + 1)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts")
    bounds = sorted({0, len(stream), *cuts})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "access.log"
        files: dict[int, Path] = {}  # every file the writer used, by inode
        if exists_at_start:
            path.write_bytes(b"old line\nolder line\n")
            files[inode(path)] = path
        tailer = LogTailer("main", path, None, max_line=max_line, max_read=max_read)
        got: list[str] = []
        skipped = 0
        writer: io.FileIO | None = None
        written = 0
        renamed = 0
        pending_reopen = False

        def read() -> None:
            batch, position = tailer.read()
            got.extend(batch)
            if position.inode:
                # Only ever just after a newline, and never before what the file holds.
                content = files[position.inode].read_bytes()
                assert position.offset <= len(content)
                assert position.offset == 0 or content[position.offset - 1] == ord("\n")

        def writer_inode() -> int:
            assert writer is not None
            return os.fstat(writer.fileno()).st_ino

        def catch_up() -> bool:
            """Read until the tailer follows the writer's file; False if it cannot yet."""
            for _ in range(len(stream) + 10):
                if tailer.position.inode == writer_inode():
                    return True
                read()
            return False

        def open_writer() -> None:
            nonlocal writer
            if writer is not None:
                writer.close()
            writer = path.open("ab", buffering=0)
            files[writer_inode()] = path

        read()  # the start: the tailer opens the file, or finds it missing
        open_writer()
        for chunk in chunks:
            for action in data.draw(st.lists(st.sampled_from(ACTIONS), max_size=3)):
                if action == "read":
                    read()
                elif action.startswith("rename") and not pending_reopen and catch_up():
                    renamed += 1
                    rotated = path.with_name(f"access.log.{renamed}")
                    path.rename(rotated)
                    files[writer_inode()] = rotated
                    if action == "rename-and-create":
                        path.touch()
                        files[inode(path)] = path
                    pending_reopen = True
                elif action == "reopen" and pending_reopen and written in line_ends:
                    open_writer()
                    pending_reopen = False
                elif (
                    action == "restart"
                    and not pending_reopen
                    and tailer.position.inode in (0, writer_inode())
                ):
                    skipped += tailer.skipped_long_lines
                    tailer.close()
                    tailer = LogTailer(
                        "main", path, tailer.position, max_line=max_line, max_read=max_read
                    )
                    read()  # the daemon reads as soon as it starts
            assert writer is not None
            writer.write(chunk)
            written += len(chunk)
        if pending_reopen:
            open_writer()
        for _ in range(len(stream) // max_read + 10):
            read()
        skipped += tailer.skipped_long_lines
        tailer.close()
        assert writer is not None
        writer.close()

    assert got == [line for line in lines if len(line.encode()) <= max_line]
    assert skipped == sum(len(line.encode()) > max_line for line in lines)
