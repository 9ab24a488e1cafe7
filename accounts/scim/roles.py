"""Which role a SCIM group grants: its displayName, through LIGHTBOX_SCIM_GROUP_ROLES.

`LIGHTBOX_SCIM_GROUP_ROLES="Radiologists=clinician,Auditors=auditor"` maps group names
(case-insensitive) to roles; a group named exactly like a role ("clinician", "Auditor") maps to
that role without configuration. Any other name is refused, so a group never grants a role by
accident. The key-custodian capability is never granted over SCIM.
"""

from __future__ import annotations

from django.conf import settings

from accounts.models import Role


def role_for_group(display_name: str) -> str | None:
    """Return the role a group called `display_name` grants, or None when it maps to none."""
    key = display_name.strip().casefold()
    mapped = getattr(settings, "LIGHTBOX_SCIM_GROUP_ROLES", {}).get(key)
    if mapped in Role.values:
        return mapped
    return key if key in Role.values else None
