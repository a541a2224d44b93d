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
    "payments:read": "Read how late the fund pays its providers",
    "accounts:manage": "Create agents, set their roles, issue and revoke API tokens",
    "audit:read": "Read and verify the audit trail",
    "cards:read": "Read cards, their history and pick-up points",
    "cards:issue": "Issue, block and replace cards; build shipment batches",
    "desk:deliver": "At a pick-up point: receive shipments, hand cards over against the national ID, return the undelivered",
    "stats:read": "Read distribution and use statistics",
    "sms:gateway": "The SMS operator's gateway: deliver inbound messages",
}

ROLES: dict[str, frozenset[str]] = {
    # Enrols members and dependants at a regional centre.
    "registry_clerk": frozenset({"registry:read", "registry:write", "registry:import", "providers:read", "providers:write",
                                 "cards:read", "cards:issue", "stats:read"}),
    # Decides on requests; reads the registry to do so, never edits it.
    "reviewer": frozenset({"registry:read", "providers:read", "claims:review", "payments:read", "cards:read",
                           "stats:read"}),
    # Pays providers; needs providers' identities and tax regime, not families.
    "finance": frozenset({"providers:read", "payments:run", "payments:read"}),
    # Manages accounts and reads the audit trail; segregation of duties keeps registry writes away from it.
    "admin": frozenset({"accounts:manage", "audit:read", "registry:read", "providers:read", "stats:read"}),
    # Hands cards over at a post office: sees only what the desk needs, never families or health data.
    "post_office_clerk": frozenset({"desk:deliver"}),
}


def permissions_of(roles: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Return the union of the permissions of `roles`."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)
