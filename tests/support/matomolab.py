"""A real Matomo 5 for tests: the kit in ``../shared/matomo`` (``matomo-lab``), and a small client.

``MatomoLab.up(directory)`` starts a private Matomo (MariaDB plus PHP's built-in server on random
loopback ports) and reads the ``matomo.env`` it prints: base URL, a superuser token and two sites.
The client methods read what Matomo made of the tracked requests through its Reporting API, the
way a station reads its reports, so tests assert on Matomo's own answers, never on a recorder.

Where the kit lives: ``AUDIMETER_MATOMO_KIT`` if set, else ``../shared/matomo`` beside the
checkout. ``kit_path()`` returns None when it is absent, so the tier can be skipped with one line.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["KitMissing", "MatomoLab", "MatomoLabError", "kit_path"]

REPO = Path(__file__).resolve().parents[2]


class MatomoLabError(Exception):
    """The kit could not start Matomo, or Matomo answered an API call with an error."""


class KitMissing(Exception):
    """The kit is not there; the message says where it was looked for."""


def kit_path() -> Path:
    """The ``matomo-lab`` script, or KitMissing naming where it was looked for."""
    configured = os.environ.get("AUDIMETER_MATOMO_KIT")
    kit = Path(configured) if configured else REPO.parent / "shared" / "matomo"
    script = kit / "matomo-lab"
    if not script.is_file():
        raise KitMissing(
            f"no Matomo kit at {kit} (set AUDIMETER_MATOMO_KIT to the folder holding matomo-lab)"
        )
    return script


@dataclass(frozen=True)
class Token:
    """A user's app token and what it is for (tests of access levels)."""

    login: str
    token: str


class MatomoLab:
    """One running kit instance in ``directory``."""

    def __init__(self, script: Path, directory: Path, env: Mapping[str, str]) -> None:
        self.script = script
        self.directory = directory
        self.env = dict(env)
        self.url: str = env["MATOMO_URL"]
        self.token: str = env["MATOMO_TOKEN_AUTH"]
        self.site_id = int(env["MATOMO_SITE_ID"])
        self.site_id_2 = int(env["MATOMO_SITE_ID_2"])
        self.visit_length = int(env["MATOMO_VISIT_LENGTH"])
        self._http = httpx.Client(timeout=60)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def up(cls, directory: Path, script: Path | None = None) -> MatomoLab:
        script = script or kit_path()
        directory.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(script), "up", str(directory)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-15:])
            raise MatomoLabError(f"matomo-lab up failed (exit {done.returncode}):\n{tail}")
        env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        if "MATOMO_URL" not in env:
            raise MatomoLabError(f"matomo-lab up printed no MATOMO_URL:\n{done.stdout}")
        return cls(script, directory, env)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.script), *args, str(self.directory)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise MatomoLabError(f"matomo-lab {args[0]} failed: {done.stderr.strip()[-2000:]}")

    def down(self) -> None:
        self._run("down")

    def restart(self) -> None:
        """Bring a stopped instance back (``up`` restarts whatever is down)."""
        self._run("up")

    def reset(self) -> None:
        """Delete every tracked visit and archive; sites, users and tokens stay."""
        self._run("reset")

    def close(self) -> None:
        self._http.close()

    def archive(self) -> None:
        """Run Matomo's archiver, so reports such as VisitsSummary.get hold the tracked visits."""
        php = shutil.which("php") or "php"
        done = subprocess.run(
            [
                php,
                str(self.directory / "app" / "console"),
                "core:archive",
                f"--url={self.url}",
                "--force-all-websites",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise MatomoLabError(f"core:archive failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def config_head(self, state: Path, keepalive_interval: int, token: str | None = None) -> str:
        """The `[state]` and `[matomo]` tables of an audimeter configuration for this Matomo."""
        return f"""
[state]
path = "{state}"

[matomo]
url = "{self.url}"
site_id = {self.site_id}
token_auth = "{self.token if token is None else token}"
keepalive_interval = {keepalive_interval}
visit_length = {self.visit_length}
"""

    # ------------------------------------------------------------------ the Reporting API

    def api(self, method: str, token: str | None = None, **params: object) -> Any:
        """Call ``method``; raise MatomoLabError when Matomo answers with an error."""
        answer = self.api_raw(method, token=token, **params)
        if isinstance(answer, dict) and answer.get("result") == "error":
            raise MatomoLabError(f"{method}: {answer.get('message')}")
        return answer

    def api_raw(self, method: str, token: str | None = None, **params: object) -> Any:
        """Call ``method`` and return Matomo's JSON answer, errors included."""
        # module/format/method in the query string: Matomo answers errors as JSON only then.
        query = {"module": "API", "format": "json", "method": method}
        form = {key: str(value) for key, value in params.items()}
        form["token_auth"] = self.token if token is None else token
        response = self._http.post(self.url + "index.php", params=query, data=form)
        try:
            return response.json()
        except json.JSONDecodeError:
            raise MatomoLabError(
                f"{method}: HTTP {response.status_code} without JSON: {response.text[:300]}"
            ) from None

    def visits(self, site_id: int | None = None, date: str = "today") -> list[dict[str, Any]]:
        """Every visit of ``site_id`` on ``date`` (a day or ``FROM,TO``), oldest first."""
        period = "range" if "," in date or date.startswith("last") else "day"
        answer = self.api(
            "Live.getLastVisitsDetails",
            idSite=site_id or self.site_id,
            period=period,
            date=date,
            filter_limit=-1,
            filter_sort_order="asc",
        )
        assert isinstance(answer, list)
        return sorted(answer, key=lambda v: (int(v["firstActionTimestamp"]), str(v["idVisit"])))

    def counters(
        self, site_id: int | None = None, last_minutes: int = 3, segment: str | None = None
    ) -> dict[str, int]:
        """Live.getCounters; a `segment` such as ``visitIp==127.0.0.21`` counts one listener."""
        extra = {"segment": segment} if segment else {}
        answer = self.api(
            "Live.getCounters", idSite=site_id or self.site_id, lastMinutes=last_minutes, **extra
        )
        assert isinstance(answer, list)
        assert answer
        return {key: int(value) for key, value in answer[0].items()}

    # ------------------------------------------------------------------ users and access

    def add_user(self, access: str, sites: Sequence[int] = ()) -> Token:
        """A new user with ``access`` (view, write, admin) on ``sites``, and an app token of it."""
        login = f"u{secrets.token_hex(5)}"
        password = secrets.token_hex(12)
        self.api(
            "UsersManager.addUser",
            userLogin=login,
            password=password,
            email=f"{login}@example.org",
            passwordConfirmation=password,
        )
        if sites:
            self.set_access(login, access, sites)
        token = self.api(
            "UsersManager.createAppSpecificTokenAuth",
            userLogin=login,
            passwordConfirmation=password,
            description="audimeter tests",
        )
        return Token(login, str(token["value"]))

    def set_access(self, login: str, access: str, sites: Sequence[int]) -> None:
        """Give ``login`` ``access`` (view, write, admin, or noaccess) on ``sites``."""
        self.api(
            "UsersManager.setUserAccess",
            userLogin=login,
            access=access,
            idSites=",".join(str(s) for s in sites),
            passwordConfirmation=self.env["MATOMO_ADMIN_PASSWORD"],
        )

    def add_site(self, name: str, url: str) -> int:
        answer = self.api("SitesManager.addSite", siteName=name, urls=url, timezone="UTC")
        return int(answer["value"])

    def delete_site(self, site_id: int) -> None:
        self.api(
            "SitesManager.deleteSite",
            idSite=site_id,
            passwordConfirmation=self.env["MATOMO_ADMIN_PASSWORD"],
        )
