"""Fixtures for integration tests: a real Icecast with a source, a recording Matomo."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.icecast import IcecastServer, SourceClient
from tests.support.matomo import RecordingMatomo

MOUNT = "/live.mp3"


@pytest.fixture
def icecast(tmp_path: Path) -> Iterator[IcecastServer]:
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    with IcecastServer(tmp_path / "icecast") as server:
        yield server


@pytest.fixture
def source(icecast: IcecastServer) -> Iterator[SourceClient]:
    with SourceClient(icecast, MOUNT, name="Test Radio") as client:
        yield client


@pytest.fixture
def matomo() -> Iterator[RecordingMatomo]:
    with RecordingMatomo() as server:
        yield server
