"""`audimeter check`: is every source and Matomo reachable and usable with this configuration?"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from audimeter.clients import USER_AGENT, source_client
from audimeter.config import Config, MatomoConfig, SourceConfig
from audimeter.matomo.api import MatomoApi, MatomoApiError, error_message
from audimeter.sources import SourceError
from audimeter.sources.factory import make_poller


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    subject: str
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.subject}: {self.detail}"


async def check_source(source: SourceConfig) -> CheckResult:
    subject = f"source {source.name}"
    async with source_client(source) as client:
        poller = make_poller(source, client)
        try:
            info = await poller.describe()
        except SourceError as exc:
            return CheckResult(False, subject, str(exc).removeprefix(f"{subject} "))
        if not info.mounts:
            return CheckResult(
                False,
                subject,
                f"{info.software} at {source.base_url} answers, but no mount is live "
                "(is a source client streaming?)",
            )
        mounts = ", ".join(f"{m} ({n})" for m, n in sorted(info.mounts.items()))
        total = sum(info.mounts.values())
        return CheckResult(
            True,
            subject,
            f"{info.software} at {source.base_url}, credentials accepted, "
            f"{len(info.mounts)} mount(s) with {total} listener(s): {mounts}",
        )


# Matomo's pages where the failures below are fixed, named in their messages.
USERS_PAGE = "Matomo > Administration > Users"
SITES_PAGE = "Matomo > Administration > Websites > Manage"
TOKENS_PAGE = "Matomo > Administration > Personal > Security > Auth tokens"


def site_uses(config: Config) -> dict[int, list[str]]:
    """Every Matomo site the configuration sends to, with the settings that name it."""
    uses: dict[int, list[str]] = {}
    if config.matomo is not None:
        uses.setdefault(config.matomo.site_id, []).append("matomo.site_id")
    for i, source in enumerate(config.sources):
        if source.site_id is not None:
            uses.setdefault(source.site_id, []).append(f"sources[{i}].site_id")
        for mount, site in source.sites.items():
            uses.setdefault(site, []).append(f'sources[{i}].sites "{mount}"')
    return dict(sorted(uses.items()))


def _ids(answer: object) -> set[int] | None:
    if isinstance(answer, list) and all(isinstance(i, int | str) for i in answer):
        try:
            return {int(i) for i in answer}
        except ValueError:
            return None
    return None


async def check_matomo(matomo: MatomoConfig, uses: Mapping[int, list[str]]) -> list[CheckResult]:
    """Reachable, token valid, and for each site in `uses`: it exists and the token may track
    listener IPs (`cip`) and old start times (`cdt`) there, that is write or admin access."""
    token = matomo.token_auth.get_secret_value()
    # One round trip: the lists of sites by role tell both whether a site exists (for a super
    # user, whose admin list holds every site) and whether the token may write to it.
    calls: list[tuple[str, dict[str, str]]] = [
        ("API.getMatomoVersion", {}),
        ("UsersManager.hasSuperUserAccess", {}),
        ("SitesManager.getSitesIdWithAdminAccess", {}),
        ("SitesManager.getSitesIdWithWriteAccess", {}),
        ("SitesManager.getSitesIdWithViewAccess", {}),
        *(("SitesManager.getSiteFromId", {"idSite": str(site)}) for site in uses),
    ]
    async with httpx.AsyncClient(timeout=matomo.timeout, headers={"User-Agent": USER_AGENT}) as c:
        try:
            answers = await MatomoApi(c, matomo.api_url, token).bulk(calls)
        except MatomoApiError as exc:
            if exc.status == 401:
                return [
                    CheckResult(
                        False,
                        "matomo",
                        f"Matomo at {matomo.url} refused the token ({exc}): set "
                        f"matomo.token_auth to a token from {TOKENS_PAGE}",
                    )
                ]
            return [CheckResult(False, "matomo", str(exc))]
    version, superuser, *lists = answers[:5]
    admin, write, view = (_ids(answer) for answer in lists)
    if admin is None or write is None or view is None:
        problem = next(filter(None, map(error_message, lists)), "unexpected answers")
        return [
            CheckResult(
                False,
                "matomo",
                f"{matomo.url} does not answer like Matomo 4 or 5 ({problem}); is matomo.url "
                "Matomo's base URL?",
            )
        ]
    # Matomo tells its version only to a user who may see some site; the site lines tell more.
    value = version.get("value") if isinstance(version, dict) else None
    about = f"Matomo {value}" if isinstance(value, str) else "Matomo"
    roles = _Roles(
        admin, write, view, isinstance(superuser, dict) and superuser.get("value") is True
    )
    return [
        CheckResult(True, "matomo", f"{about} at {matomo.url}, token accepted"),
        *(
            roles.check(site, where, found)
            for (site, where), found in zip(uses.items(), answers[5:], strict=True)
        ),
    ]


@dataclass(frozen=True, slots=True)
class _Roles:
    """The sites on which the token's user has each role, as Matomo listed them."""

    admin: set[int]
    write: set[int]
    view: set[int]
    superuser: bool

    def check(self, site: int, where: list[str], found: object) -> CheckResult:
        """May the token track listener IPs and old start times on `site` (found: its details)?"""
        subject = f"matomo site {site} ({', '.join(where)})"
        if site in self.admin or site in self.write:
            role = (
                "super user"
                if self.superuser
                else "admin access"
                if site in self.admin
                else "write access"
            )
            name = found.get("name") if isinstance(found, dict) else None
            return CheckResult(
                True,
                subject,
                f"{name or 'exists'}; the token may send listener IPs and start times ({role})",
            )
        if site in self.view:
            return CheckResult(
                False,
                subject,
                "the token's user has only view access, so Matomo would refuse listener IPs and "
                f"start times: give it write access in {USERS_PAGE}",
            )
        if self.superuser:
            return CheckResult(
                False,
                subject,
                f"no such site: add it in {SITES_PAGE}, or change the site id in the configuration",
            )
        # Matomo does not tell other users whether a site they may not see exists.
        return CheckResult(
            False,
            subject,
            "no such site, or the token's user has no access to it: give it write access in "
            f"{USERS_PAGE}, or change the site id in the configuration",
        )


async def run_checks(config: Config) -> list[CheckResult]:
    jobs = [check_source(s) for s in config.sources]
    results: list[CheckResult] = list(await asyncio.gather(*jobs))
    if config.matomo is None:
        results.append(CheckResult(True, "matomo", "not configured: events go to stdout"))
    else:
        results.extend(await check_matomo(config.matomo, site_uses(config)))
    return results
