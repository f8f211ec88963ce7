"""The kit's Matomo answers as the tier expects: version, sites, and an empty visit log."""

from __future__ import annotations

from tests.support.matomolab import MatomoLab


def test_matomo_is_version_5_with_two_sites(real_matomo: MatomoLab) -> None:
    assert str(real_matomo.api("API.getMatomoVersion")["value"]).startswith("5.")
    site = real_matomo.api("SitesManager.getSiteFromId", idSite=real_matomo.site_id_2)
    assert int(site["idsite"]) == real_matomo.site_id_2
    assert real_matomo.visits() == []
