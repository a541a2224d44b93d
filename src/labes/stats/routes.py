"""HTTP for the indicators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from labes.security.deps import DbSession, UnitOfWorkRoute, permitted
from labes.stats import cards

router = APIRouter(prefix="/api/v1/stats", tags=["statistics"], route_class=UnitOfWorkRoute)


@router.get("/cards")
def card_summary(session: DbSession, actor: permitted("stats:read")) -> dict[str, Any]:
    """National and per-governorate card figures, delivery over time, delay to delivery, recent use."""
    return cards.summary(session)


@router.get("/cards/points")
def card_points(session: DbSession, actor: permitted("stats:read"), governorate: str | None = None,
                card_type: str | None = None) -> list[dict[str, Any]]:
    """Card figures per pick-up point."""
    return cards.by_point(session, governorate=governorate, card_type=card_type)
