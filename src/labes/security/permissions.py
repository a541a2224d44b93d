"""Roles and what each may do: data in one place, read by every endpoint's guard."""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "registry:read": "Read persons, members, dependants, coverage and family views",
    "registry:write": "Create and update persons, members, dependants, coverage, Amen households",
    "registry:import": "Run bulk imports of affiliation and provider feeds",
    "providers:read": "Read facilities and professionals",
    "providers:write": "Create and update facilities, professionals and where they practise",
    "claims:review": "Review requests, reimbursement files and prior approvals",
    "payments:run": "Run provider payments and issue tax certificates",
    "accounts:manage": "Create agents, set their roles, issue and revoke API tokens",
    "audit:read": "Read and verify the audit trail",
}

ROLES: dict[str, frozenset[str]] = {
    # Enrols members and dependants at a regional centre.
    "registry_clerk": frozenset({"registry:read", "registry:write", "registry:import", "providers:read", "providers:write"}),
    # Decides on requests; reads the registry to do so, never edits it.
    "reviewer": frozenset({"registry:read", "providers:read", "claims:review"}),
    # Pays providers; needs providers' identities and tax regime, not families.
    "finance": frozenset({"providers:read", "payments:run"}),
    # Manages accounts and reads the audit trail; segregation of duties keeps registry writes away from it.
    "admin": frozenset({"accounts:manage", "audit:read", "registry:read", "providers:read"}),
}


def permissions_of(roles: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Return the union of the permissions of `roles`."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)
