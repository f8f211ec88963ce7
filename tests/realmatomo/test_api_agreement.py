"""The recording stand-in answers the Reporting API methods `audimeter check` uses as Matomo 5 does.

Each role a token can have is asked the same questions on the real Matomo and on the stand-in;
the HTTP statuses, content types and JSON answers must be the same (a site's details are cut to
its id, since the stand-in names its sites differently).
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from tests.support.matomo import DEFAULT_TOKEN, RecordingMatomo
from tests.support.matomolab import MatomoLab

MISSING_SITE = 9999

UNKNOWN_METHOD = "SitesManager.getSitesIdWithAtLeastWriteAccess"
CALLS: list[tuple[str, dict[str, str]]] = [
    ("API.getMatomoVersion", {}),
    ("UsersManager.hasSuperUserAccess", {}),
    ("SitesManager.getSitesIdWithAdminAccess", {}),
    ("SitesManager.getSitesIdWithWriteAccess", {}),
    ("SitesManager.getSitesIdWithViewAccess", {}),
    *(("SitesManager.getSiteFromId", {"idSite": str(site)}) for site in (1, 2, MISSING_SITE)),
    (UNKNOWN_METHOD, {}),
]


def ask(
    base: str, token: str, method: str, params: dict[str, str], *, in_query: bool = True
) -> object:
    """Status, content type and JSON of one API request, with a site's details cut to its id."""
    api = {"module": "API", "format": "json", "method": method}
    form = {**params, "token_auth": token}
    response = httpx.post(
        base + "index.php",
        params=api if in_query else None,
        data=form if in_query else {**api, **form},
        timeout=30,
    )
    kind = response.headers["content-type"].split(";")[0]
    answer = response.json() if kind == "application/json" else None
    return response.status_code, kind, _cut(answer)


def _cut(answer: object) -> object:
    if isinstance(answer, list):
        return [_cut(item) for item in answer]
    if isinstance(answer, dict) and "idsite" in answer:
        return {"idsite": answer["idsite"]}
    return answer


def answers(base: str, token: str) -> list[object]:
    """Each call alone, all in one bulk request, and a call with everything in the body."""
    bulk = {f"urls[{i}]": urlencode({"method": m, **p}) for i, (m, p) in enumerate(CALLS)}
    return [
        *(ask(base, token, method, params) for method, params in CALLS),
        ask(base, token, "API.getBulkRequest", bulk),
        ask(base, token, "API.getMatomoVersion", {}, in_query=False),
    ]


@pytest.mark.parametrize(
    ("role", "access"),
    [
        ("superuser", None),
        ("write on 1", {1: "write"}),
        ("view on 1, admin on 2", {1: "view", 2: "admin"}),
        ("no site", {}),
        ("wrong token", None),
        ("no token", None),
    ],
)
def test_stand_in_answers_the_api_like_matomo(
    matomo_lab: MatomoLab, role: str, access: dict[int, str] | None
) -> None:
    lab = matomo_lab
    real_token = {"superuser": lab.token, "wrong token": "0badc0de" * 4, "no token": ""}.get(role)
    if real_token is None:
        assert access is not None
        user = lab.add_user("view", [])
        for site, level in access.items():
            lab.set_access(user.login, level, [site])
        real_token = user.token
    real = answers(lab.url, real_token)
    stand_in_token = DEFAULT_TOKEN if role not in ("wrong token", "no token") else real_token
    with RecordingMatomo(
        site_ids={1, 2}, superuser=role == "superuser", version="5.0.2", access=access
    ) as stand_in:
        assert answers(stand_in.url, stand_in_token) == real
