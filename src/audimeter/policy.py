"""Which listeners count, who they are behind a proxy, and how much of them is kept.

A pure function of a listener, applied once per session, when the sessionizer first sees a
listener. In this order:

1. proxy resolution: when a listener's address is a trusted proxy and the server reports
   X-Forwarded-For, the listener is the right-most address in that header that is not itself a
   trusted proxy;
2. filters: relays, monitors and bots are left out by user agent, and chosen addresses by
   network, before anything counts them; both see the full address and user agent;
3. privacy (`[privacy]`): the address is replaced by its network (`anonymize`) or by "" (`none`),
   and the user agent by "" (`drop`). The session holds only what is left, so the state file,
   the requests to Matomo, stdout's JSON lines and imports never see more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from audimeter.addresses import mask_address, parse_address, unmapped_network, within
from audimeter.config import Config, IpPrivacy, Network, UserAgentPrivacy
from audimeter.observations import Listener

AGENT_VERDICTS = 10_000
"""How many user agents' verdicts are remembered; more distinct ones start the memory afresh.

The remembered agent is also the one string that every admitted listener with that agent
keeps: the daemon holds a session per listener, and 100,000 copies of a dozen players would take
some 15 MB."""


def client_address(forwarded_for: str, proxies: Sequence[Network]) -> str | None:
    """The client named by an X-Forwarded-For header, skipping trusted proxies from the right."""
    for hop in reversed(forwarded_for.split(",")):
        address = parse_address(hop)
        if address is None:
            return None  # a garbled hop: trust nothing to its left
        if not within(address, proxies):
            return str(address)
    return None


class ListenerPolicy:
    def __init__(
        self,
        *,
        exclude_user_agents: Iterable[str] = (),
        exclude_addresses: Sequence[Network] = (),
        trusted_proxies: Mapping[str, Sequence[Network]] | None = None,
        ip: IpPrivacy = "full",
        user_agent: UserAgentPrivacy = "keep",
    ) -> None:
        """`ip` and `user_agent`: what `[privacy]` lets be kept of an admitted listener."""
        patterns = list(exclude_user_agents)
        self._agents = (
            re.compile("|".join(f"(?:{p})" for p in patterns), re.I) if patterns else None
        )
        self._addresses = [unmapped_network(n) for n in exclude_addresses]
        self._proxies = {
            source: [unmapped_network(n) for n in networks]
            for source, networks in (trusted_proxies or {}).items()
        }
        self._ip: IpPrivacy = ip
        self._drop_agent = user_agent == "drop"
        # Players are few and their patterns costly to search: remember each verdict, with the
        # agent's shared copy.
        self._agent_verdicts: dict[str, tuple[str, bool]] = {}

    @classmethod
    def from_config(cls, config: Config) -> ListenerPolicy:
        return cls(
            exclude_user_agents=config.filters.exclude_user_agents,
            exclude_addresses=config.filters.exclude_addresses,
            trusted_proxies={s.name: s.trusted_proxies for s in config.sources},
            ip=config.privacy.ip,
            user_agent=config.privacy.user_agent,
        )

    def __call__(self, source: str, listener: Listener) -> Listener | None:
        """The listener as it should count and be kept, or None when it must not count."""
        proxies = self._proxies.get(source)
        if proxies and listener.forwarded_for and within(parse_address(listener.ip), proxies):
            client = client_address(listener.forwarded_for, proxies)
            if client is not None:
                listener = listener._replace(ip=client)
        agent, excluded = self._agent_verdict(listener.user_agent)
        if excluded:
            return None
        if agent is not listener.user_agent:
            listener = listener._replace(user_agent=agent)
        if self._addresses and within(parse_address(listener.ip), self._addresses):
            return None
        if self._ip != "full":
            # The header holds full addresses too.
            listener = listener._replace(ip=mask_address(listener.ip, self._ip), forwarded_for="")
        if self._drop_agent:
            listener = listener._replace(user_agent="")
        return listener

    def _agent_verdict(self, user_agent: str) -> tuple[str, bool]:
        """The shared copy of `user_agent`, and whether it is left out."""
        verdict = self._agent_verdicts.get(user_agent)
        if verdict is None:
            excluded = self._agents is not None and self._agents.search(user_agent) is not None
            if len(self._agent_verdicts) >= AGENT_VERDICTS:
                self._agent_verdicts.clear()
            verdict = self._agent_verdicts[user_agent] = (user_agent, excluded)
        return verdict
