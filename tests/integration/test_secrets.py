"""No command ever shows a secret: token_auth and passwords stay out of all output and state."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.audimeter import AudimeterProcess, wait_for
from tests.support.matomo import RecordingMatomo
from tests.support.shoutcast import Dnas1Emulator, Dnas2Emulator

TOKEN = "0123456789abcdef0123456789abcdef"
DNAS2_PASSWORD = "Dnas2-Secret-pw"
DNAS1_PASSWORD = "Dnas1-Secret-pw"
WEBHOOK_PASSWORD = "Webhook-Secret-pw"
SECRETS = (TOKEN, DNAS2_PASSWORD, DNAS1_PASSWORD, WEBHOOK_PASSWORD)


def write(tmp_path: Path, matomo_url: str, dnas2: str, dnas1: str, *, password: str) -> Path:
    path = tmp_path / "audimeter.toml"
    path.write_text(
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
        f'[matomo]\nurl = "{matomo_url}"\nsite_id = 1\ntoken_auth = "{TOKEN}"\n'
        "keepalive_interval = 4\nvisit_length = 10\ntimeout = 2\n"
        f'[webhook]\nlisten = "127.0.0.1:0"\npassword = "{WEBHOOK_PASSWORD}"\n'
        f'[[sources]]\nname = "two"\nkind = "shoutcast2"\nurl = "{dnas2}"\n'
        f'password = "{password}"\npoll_interval = 0.5\n'
        f'[[sources]]\nname = "one"\nkind = "shoutcast1"\nurl = "{dnas1}"\n'
        f'password = "{DNAS1_PASSWORD}"\npoll_interval = 0.5\n'
    )
    return path


def audimeter(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "audimeter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


def test_no_command_shows_a_secret(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        '127.0.0.9 - - [26/Nov/2026:12:44:05 +0000] "GET /live.mp3 HTTP/1.1" 200 9 "-" "VLC" 60\n'
        "a bad line\n"
    )
    outputs: dict[str, str] = {}
    with (
        Dnas2Emulator(admin_password=DNAS2_PASSWORD) as dnas2,
        Dnas1Emulator(password=DNAS1_PASSWORD) as dnas1,
        RecordingMatomo(token_auth="another-token") as wrong_matomo,
    ):
        dnas2.add_listener(1, "127.0.0.81", "VLC/3.0")
        dnas1.add_listener(1, "127.0.0.82", "Winamp/5.9")
        good = write(tmp_path, wrong_matomo.url, dnas2.url, dnas1.url, password=DNAS2_PASSWORD)
        (tmp_path / "bad").mkdir()
        bad = write(tmp_path / "bad", wrong_matomo.url, dnas2.url, dnas1.url, password="x")
        outputs["check"] = audimeter("check", "--config", str(good))
        outputs["check, wrong password"] = audimeter("check", "--config", str(bad))
        wrong_matomo.fail_with(503)
        for fmt in ("text", "json"):
            run = AudimeterProcess(good, args=("--log-format", fmt, "--log-level", "debug"))
            run.stderr_path = tmp_path / f"run-{fmt}.stderr"
            with run:
                wait_for(lambda: "503" in run.logs(), 30, "Matomo's refusal in the log")  # noqa: B023
                run.stop(signal.SIGTERM)
            outputs[f"run --log-format {fmt}"] = run.logs() + run.output()
        outputs["import --dry-run"] = audimeter(
            "import", "--config", str(good), "--source", "one", "--dry-run", str(log)
        )
    broken = tmp_path / "broken.toml"
    broken.write_text(good.read_text().replace("site_id = 1", 'site_id = "one"'))
    outputs["config error"] = audimeter("run", "--config", str(broken))
    for where, text in outputs.items():
        assert text.strip(), f"{where} printed nothing"
        assert_no_secret(text, where)
    assert "credentials refused" in outputs["check, wrong password"]
    assert "HTTP 503" in outputs["run --log-format text"]
    state = (tmp_path / "state.db").read_bytes()
    assert_no_secret(state.decode("latin-1"), "the state file")
