"""`audimeter check`: is every source and Matomo reachable and usable with this configuration?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from audimeter.config import Config, MatomoConfig, SourceConfig
from audimeter.matomo.api import MatomoApi, MatomoApiError
from audimeter.runner import USER_AGENT, source_client
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


async def check_matomo(matomo: MatomoConfig) -> list[CheckResult]:
    """Reachable, token valid, site exists, write access: stops at the first failure."""
    results: list[CheckResult] = []
    token = matomo.token_auth.get_secret_value()
    subject = "matomo"
    async with httpx.AsyncClient(timeout=matomo.timeout, headers={"User-Agent": USER_AGENT}) as c:
        api = MatomoApi(c, matomo.api_url, token)
        try:
            version = await api.call("API.getMatomoVersion")
            value = version.get("value") if isinstance(version, dict) else version
            results.append(
                CheckResult(True, subject, f"Matomo {value} at {matomo.url}, token accepted")
            )
            subject = f"matomo site {matomo.site_id}"
            site = await api.call("SitesManager.getSiteFromId", idSite=str(matomo.site_id))
            name = site.get("name") if isinstance(site, dict) else None
            if not name:
                results.append(CheckResult(False, subject, "no such site: check matomo.site_id"))
                return results
            results.append(CheckResult(True, subject, f"exists ({name})"))
            subject = "matomo write access"
            writable = await api.call("SitesManager.getSitesIdWithAtLeastWriteAccess")
        except MatomoApiError as exc:
            results.append(CheckResult(False, subject, str(exc)))
            return results
    if isinstance(writable, list) and matomo.site_id in {int(i) for i in writable}:
        results.append(
            CheckResult(
                True,
                subject,
                f"token_auth may send listener IPs and start times to site {matomo.site_id}",
            )
        )
    else:
        results.append(
            CheckResult(
                False,
                subject,
                f"token_auth has no write access to site {matomo.site_id}: Matomo would refuse the "
                "listener IPs and real start times; give the token's user write access",
            )
        )
    return results


async def run_checks(config: Config) -> list[CheckResult]:
    jobs = [check_source(s) for s in config.sources]
    results: list[CheckResult] = list(await asyncio.gather(*jobs))
    if config.matomo is None:
        results.append(CheckResult(True, "matomo", "not configured: events go to stdout"))
    else:
        results.extend(await check_matomo(config.matomo))
    return results
