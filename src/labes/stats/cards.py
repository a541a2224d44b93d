"""Card distribution and use: by governorate and pick-up point, delivery over time, delays, real use.

Every figure is one grouped query, so the cost does not grow with the number of pick-up points and
stays a scan of the card table's narrow columns at national scale.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from labes.cards.models import Card, PickupPoint

# How each state counts in the fund's figures: a delivered card in use is still a delivered card.
BUCKETS = {
    "printed": ("printed", "batched"),
    "shipped": ("shipped",),
    "awaiting_pickup": ("at_point",),
    "delivered": ("delivered", "in_use"),
    "in_use": ("in_use",),
    "returned": ("returned",),
    "blocked": ("blocked",),
}


def _bucket_columns():
    return [func.sum(case((Card.state.in_(states), 1), else_=0)).label(name) for name, states in BUCKETS.items()]


def _row(values: dict[str, Any]) -> dict[str, Any]:
    row = {name: int(values.get(name) or 0) for name in BUCKETS}
    row["total"] = sum(row[name] for name in ("printed", "shipped", "awaiting_pickup", "delivered", "returned", "blocked"))
    row["delivery_rate"] = round(row["delivered"] / row["total"], 4) if row["total"] else 0.0
    return row


def by_governorate(session: Session, *, card_type: str | None = None) -> list[dict[str, Any]]:
    """Cards per governorate and state bucket."""
    query = select(Card.governorate, *_bucket_columns()).group_by(Card.governorate).order_by(Card.governorate)
    if card_type:
        query = query.where(Card.card_type == card_type)
    return [{"governorate": r.governorate, **_row(r._asdict())} for r in session.execute(query)]


def by_point(session: Session, *, governorate: str | None = None, card_type: str | None = None) -> list[dict[str, Any]]:
    """Cards per pick-up point and state bucket (cards not yet assigned a point are left out)."""
    query = (select(PickupPoint.code, PickupPoint.name_fr, PickupPoint.kind, PickupPoint.governorate, *_bucket_columns())
             .join(Card, Card.point_id == PickupPoint.id)
             .group_by(PickupPoint.code, PickupPoint.name_fr, PickupPoint.kind, PickupPoint.governorate)
             .order_by(PickupPoint.governorate, PickupPoint.code))
    if governorate:
        query = query.where(PickupPoint.governorate == governorate.upper())
    if card_type:
        query = query.where(Card.card_type == card_type)
    return [{"code": r.code, "name": r.name_fr, "kind": r.kind, "governorate": r.governorate, **_row(r._asdict())}
            for r in session.execute(query)]


def _month(column, dialect: str):
    return func.to_char(column, "YYYY-MM") if dialect == "postgresql" else func.strftime("%Y-%m", column)


def delivery_over_time(session: Session) -> list[dict[str, Any]]:
    """Per month: cards printed, cards delivered, and the cumulative delivery rate at the month's end."""
    dialect = session.get_bind().dialect.name
    printed_month = _month(Card.printed_on, dialect).label("month")
    delivered_month = _month(Card.delivered_on, dialect).label("month")
    printed = dict(session.execute(select(printed_month, func.count()).group_by(printed_month)).all())
    delivered = dict(session.execute(select(delivered_month, func.count()).where(Card.delivered_on.is_not(None))
                                     .group_by(delivered_month)).all())
    rows, total_printed, total_delivered = [], 0, 0
    for month in sorted(set(printed) | set(delivered)):
        total_printed += printed.get(month, 0)
        total_delivered += delivered.get(month, 0)
        rows.append({"month": month, "printed": printed.get(month, 0), "delivered": delivered.get(month, 0),
                     "cumulative_printed": total_printed, "cumulative_delivered": total_delivered,
                     "delivery_rate": round(total_delivered / total_printed, 4) if total_printed else 0.0})
    return rows


def median_days_to_delivery(session: Session) -> float | None:
    """The median number of days from printing to delivery, from a histogram of delays (no row transfer)."""
    dialect = session.get_bind().dialect.name
    days = (Card.delivered_on - Card.printed_on) if dialect == "postgresql" else \
        (func.julianday(Card.delivered_on) - func.julianday(Card.printed_on))
    histogram = sorted((int(d), n) for d, n in session.execute(
        select(days, func.count()).where(Card.delivered_on.is_not(None)).group_by(days)))
    total = sum(n for _, n in histogram)
    if total == 0:
        return None
    return _median_from_histogram(histogram, total)


def _median_from_histogram(histogram: list[tuple[int, int]], total: int) -> float:
    """Return the median of a sorted (value, count) histogram."""
    lower_rank, upper_rank = (total - 1) // 2, total // 2
    seen, lower = 0, None
    for value, count in histogram:
        if lower is None and seen + count > lower_rank:
            lower = value
        if seen + count > upper_rank:
            return (lower + value) / 2
        seen += count
    raise ValueError("empty histogram")


def recent_use(session: Session, *, now: datetime | None = None, days: int = 90) -> dict[str, Any]:
    """The share of delivered cards that were used in the last `days` days (the seeds' "only 5% use it")."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    delivered, used = session.execute(
        select(func.count(), func.sum(case((Card.last_used_at >= since, 1), else_=0)))
        .where(Card.state.in_(BUCKETS["delivered"]))).one()
    delivered, used = int(delivered or 0), int(used or 0)
    return {"days": days, "delivered": delivered, "used": used,
            "share": round(used / delivered, 4) if delivered else 0.0}


def summary(session: Session, *, now: datetime | None = None) -> dict[str, Any]:
    """Every card indicator at once (the API's and `labes stats cards`' answer)."""
    governorates = by_governorate(session)
    national = defaultdict(int)
    for row in governorates:
        for name in (*BUCKETS, "total"):
            national[name] += row[name]
    national_row = dict(national)
    national_row["delivery_rate"] = round(national["delivered"] / national["total"], 4) if national["total"] else 0.0
    return {"as_of": (now or datetime.now(UTC)).date().isoformat(), "national": national_row,
            "by_governorate": governorates, "delivery_over_time": delivery_over_time(session),
            "median_days_to_delivery": median_days_to_delivery(session), "recent_use": recent_use(session, now=now)}

