"""The recording Matomo stand-in, also answering which sites its token may track to.

``AccessMatomo`` adds the Reporting API calls that tell it, as measured on Matomo 5.0.2:
``SitesManager.getSitesIdWithAdminAccess`` (every site for a super user, none for a user with
write access) and ``SitesManager.getSitesIdWithWriteAccess`` (the sites of a user with write
access), alone or in one ``API.getBulkRequest``. A site refused with ``refuse_sites`` is in
neither, like a deleted site or one whose access was removed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl

from tests.support.matomo import LOGIN_REQUIRED, RecordingMatomo, _Reply

ADMIN = "SitesManager.getSitesIdWithAdminAccess"
WRITE = "SitesManager.getSitesIdWithWriteAccess"


class AccessMatomo(RecordingMatomo):
    def _api(self, params: Mapping[str, str]) -> _Reply:
        method = params.get("method", "")
        if method not in (ADMIN, WRITE, "API.getBulkRequest"):
            return super()._api(params)
        with self._lock:
            self._api_calls.append(method)
            delay = self._faults.delay
        if not self._token_ok(params.get("token_auth")):
            return _Reply(
                401, json.dumps({"result": "error", "message": LOGIN_REQUIRED}), delay=delay
            )
        if method != "API.getBulkRequest":
            return _Reply(200, json.dumps(self._sites(method)), delay=delay)
        answers: list[object] = []
        for index in range(len(params)):
            url = params.get(f"urls[{index}]")
            if url is None:
                break
            called = dict(parse_qsl(url)).get("method", "")
            if called in (ADMIN, WRITE):
                answers.append(self._sites(called))
            else:
                answers.append({"result": "error", "message": f"no method {called!r} here"})
        return _Reply(200, json.dumps(answers), delay=delay)

    def _sites(self, method: str) -> list[int]:
        writable = sorted(self.site_ids - self.refused_sites)
        # A super user has admin access to every site; the token's user here has write access.
        return writable if (method == ADMIN) == self._superuser else []
