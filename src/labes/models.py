"""Import every domain's tables so the metadata is complete (Alembic, tests)."""

from __future__ import annotations


def load_all() -> None:
    """Register every table on `labes.db.Base.metadata`."""
    import labes.cards.models  # noqa: F401
    import labes.care.models  # noqa: F401
    import labes.claims.models  # noqa: F401
    import labes.registry.models  # noqa: F401
    import labes.security.models  # noqa: F401
