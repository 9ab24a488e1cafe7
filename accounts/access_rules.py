"""Evaluate an organisation's access rules (client network, time of day) for one membership."""

from __future__ import annotations

import ipaddress
from datetime import datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone


@lru_cache(maxsize=1024)
def parse_networks(text: str) -> tuple:
    """Parse one CIDR block per line; a bad line raises ValueError naming it (used by the admin form)."""
    networks = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            networks.append(ipaddress.ip_network(line, strict=False))
        except ValueError:
            raise ValueError(f"line {number}: {line[:60]!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def _in_networks(ip: str | None, text: str) -> bool:
    networks = parse_networks(text)
    if not networks:
        return True
    if ip is None:
        # SECURITY: a rule that names networks cannot be met by a caller whose address is unknown.
        return False
    address = ipaddress.ip_address(ip)
    return any(address.version == n.version and address in n for n in networks)


def _in_window(local: time, start: time | None, end: time | None) -> bool:
    if start is None or end is None:
        return True
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # the window wraps past midnight


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def rule_blocks(rules, membership, *, ip: str | None, now: datetime | None) -> str | None:
    """Return why the rules refuse this membership now, or None when every applicable rule passes."""
    applicable = [r for r in rules if not r.role or r.role == membership.role]
    if not applicable:
        return None
    now = now or timezone.now()
    local = now.astimezone(_zone(membership.organization.time_zone)).time()
    for rule in applicable:
        if not _in_networks(ip, rule.allowed_networks):
            return "client network not allowed"
        if not _in_window(local, rule.hours_start, rule.hours_end):
            return "outside allowed hours"
    return None
