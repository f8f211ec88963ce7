"""`audimeter check` against the real Matomo 5: each kind of token, each kind of wrong site.

The command runs as an operator runs it (a subprocess), with a real Icecast as the source; the
tokens are real users' app tokens with the roles under test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.icecast import IcecastServer, SourceClient
from tests.support.matomolab import MatomoLab

pytestmark = pytest.mark.icecast

MOUNT = "/live.mp3"
TALK = "/talk.mp3"
MISSING_SITE = 9999
WRITE_ACCESS = "give it write access in Matomo > Administration > Users"
PASSES = "the token may send listener IPs and start times"


@pytest.fixture(scope="module")
def icecast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IcecastServer]:
    if shutil.which("icecast2") is None:
        pytest.skip("icecast2 is not installed (Debian package icecast2)")
    with (
        IcecastServer(tmp_path_factory.mktemp("icecast")) as server,
        SourceClient(server, MOUNT, name="Test Radio"),
    ):
        yield server


def check(
    tmp_path: Path, icecast: IcecastServer, lab: MatomoLab, token: str, sites: dict[str, int]
) -> tuple[int, list[str]]:
    """Run `audimeter check` with site 1 as matomo.site_id and `sites` as the mounts' sites."""
    mounts = ", ".join(f'"{mount}" = {site}' for mount, site in sites.items())
    config = tmp_path / "audimeter.toml"
    config.write_text(
        f'[matomo]\nurl = "{lab.url}"\nsite_id = {lab.site_id}\ntoken_auth = "{token}"\n'
        f'[[sources]]\nname = "main"\nkind = "icecast"\nurl = "{icecast.url}"\n'
        f'username = "{icecast.admin_auth[0]}"\npassword = "{icecast.admin_auth[1]}"\n'
        f"sites = {{ {mounts} }}\n"
    )
    config.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "audimeter", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    for secret in (token, lab.token, icecast.admin_auth[1]):
        assert secret not in output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ok    source main: Icecast 2.4.4 at {icecast.url}")
    return result.returncode, lines[1:]


def test_superuser_token_passes(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    lab = real_matomo
    code, lines = check(tmp_path, icecast, lab, lab.token, {TALK: lab.site_id_2})
    assert code == 0, lines
    assert lines == [
        f"ok    matomo: Matomo 5.0.2 at {lab.url}, token accepted",
        f"ok    matomo site 1 (matomo.site_id): radio.example.org; {PASSES} (super user)",
        f'ok    matomo site 2 (sources[0].sites "{TALK}"): second.radio.example.org; {PASSES}'
        " (super user)",
    ]


def test_write_and_admin_access_pass(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    user = real_matomo.add_user("write", [real_matomo.site_id])
    real_matomo.set_access(user.login, "admin", [real_matomo.site_id_2])
    code, lines = check(tmp_path, icecast, real_matomo, user.token, {TALK: real_matomo.site_id_2})
    assert code == 0, lines
    assert lines[1:] == [
        f"ok    matomo site 1 (matomo.site_id): radio.example.org; {PASSES} (write access)",
        f'ok    matomo site 2 (sources[0].sites "{TALK}"): second.radio.example.org; {PASSES}'
        " (admin access)",
    ]


def test_write_access_to_one_site_fails_on_the_other(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    user = real_matomo.add_user("write", [real_matomo.site_id])
    code, lines = check(tmp_path, icecast, real_matomo, user.token, {TALK: real_matomo.site_id_2})
    assert code == 1
    assert lines == [
        f"ok    matomo: Matomo 5.0.2 at {real_matomo.url}, token accepted",
        f"ok    matomo site 1 (matomo.site_id): radio.example.org; {PASSES} (write access)",
        f'FAIL  matomo site 2 (sources[0].sites "{TALK}"): no such site, or the token\'s user'
        f" has no access to it: {WRITE_ACCESS}, or change the site id in the configuration",
    ]


def test_view_only_token_fails_naming_each_site(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    lab = real_matomo
    user = lab.add_user("view", [lab.site_id, lab.site_id_2])
    code, lines = check(tmp_path, icecast, lab, user.token, {TALK: lab.site_id_2, MOUNT: 1})
    assert code == 1
    view_only = (
        "the token's user has only view access, so Matomo would refuse listener IPs and start"
        f" times: {WRITE_ACCESS}"
    )
    assert lines == [
        f"ok    matomo: Matomo 5.0.2 at {lab.url}, token accepted",
        f'FAIL  matomo site 1 (matomo.site_id, sources[0].sites "{MOUNT}"): {view_only}',
        f'FAIL  matomo site 2 (sources[0].sites "{TALK}"): {view_only}',
    ]


def test_wrong_token_is_one_line(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    code, lines = check(tmp_path, icecast, real_matomo, "0badc0de" * 4, {TALK: 2})
    assert code == 1
    assert lines == [
        f"FAIL  matomo: Matomo at {real_matomo.url} refused the token (Unable to authenticate"
        " with the provided token. It is either invalid or expired.): set matomo.token_auth to a"
        " token from Matomo > Administration > Personal > Security > Auth tokens"
    ]


def test_mount_mapped_to_a_missing_site(
    tmp_path: Path, icecast: IcecastServer, real_matomo: MatomoLab
) -> None:
    code, lines = check(tmp_path, icecast, real_matomo, real_matomo.token, {TALK: MISSING_SITE})
    assert code == 1
    assert lines[1:] == [
        f"ok    matomo site 1 (matomo.site_id): radio.example.org; {PASSES} (super user)",
        f'FAIL  matomo site {MISSING_SITE} (sources[0].sites "{TALK}"): no such site: add it in'
        " Matomo > Administration > Websites > Manage, or change the site id in the configuration",
    ]
