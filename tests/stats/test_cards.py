"""Card statistics computed from cards in known states and dates."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from labes.cards.models import Card, PickupPoint
from labes.cards.serials import make_serial
from labes.stats import cards as stats
from tests import factories

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def points(session):
    made = {}
    for code, governorate in (("PKAS1", "KAS"), ("PSFX1", "SFX")):
        made[code] = PickupPoint(code=code, kind="post_office", name_ar="مكتب بريد", name_fr=f"Poste {code}",
                                 governorate=governorate)
        session.add(made[code])
    session.flush()
    return made


def card(session, number, *, state, governorate="KAS", point=None, printed=date(2026, 1, 10), delivered=None,
         last_used=None):
    row = Card(id=uuid.uuid4(), serial=make_serial("labes", number), card_type="labes", holder_name="X",
               governorate=governorate, state=state, issued_at=NOW, printed_on=printed, delivered_on=delivered,
               last_used_at=last_used, point_id=point.id if point else None, public_key=b"k", certificate=b"c",
               printed_code="LB1")
    session.add(row)
    return row


@pytest.fixture
def population(session, points):
    kas, sfx = points["PKAS1"], points["PSFX1"]
    card(session, 1, state="printed")
    card(session, 2, state="batched", point=kas)
    card(session, 3, state="shipped", point=kas)
    card(session, 4, state="at_point", point=kas)
    card(session, 5, state="delivered", point=kas, delivered=date(2026, 1, 20), last_used=None)
    card(session, 6, state="in_use", point=kas, delivered=date(2026, 2, 9), last_used=NOW - timedelta(days=10))
    card(session, 7, state="in_use", point=sfx, governorate="SFX", delivered=date(2026, 2, 14),
         last_used=NOW - timedelta(days=200))
    card(session, 8, state="returned", point=sfx, governorate="SFX")
    card(session, 9, state="blocked", governorate="SFX", printed=date(2026, 2, 1))
    session.flush()


def test_by_governorate_counts_each_bucket(session, population):
    rows = {r["governorate"]: r for r in stats.by_governorate(session)}
    assert rows["KAS"] == {"governorate": "KAS", "printed": 2, "shipped": 1, "awaiting_pickup": 1, "delivered": 2, "in_use": 1,
                           "returned": 0, "blocked": 0, "total": 6, "delivery_rate": round(2 / 6, 4)}
    assert (rows["SFX"]["delivered"], rows["SFX"]["returned"], rows["SFX"]["blocked"], rows["SFX"]["total"]) == (1, 1, 1, 3)


def test_by_point(session, population):
    rows = {r["code"]: r for r in stats.by_point(session)}
    assert rows["PKAS1"]["awaiting_pickup"] == 1 and rows["PKAS1"]["total"] == 5
    assert set(rows) == {"PKAS1", "PSFX1"}
    assert [r["code"] for r in stats.by_point(session, governorate="sfx")] == ["PSFX1"]


def test_delivery_over_time_is_cumulative(session, population):
    months = {r["month"]: r for r in stats.delivery_over_time(session)}
    assert months["2026-01"]["printed"] == 8 and months["2026-01"]["delivered"] == 1
    assert months["2026-02"]["cumulative_delivered"] == 3 and months["2026-02"]["cumulative_printed"] == 9
    assert months["2026-02"]["delivery_rate"] == round(3 / 9, 4)


def test_median_days_to_delivery(session, population):
    # Delays: 10, 30 and 35 days.
    assert stats.median_days_to_delivery(session) == 30


def test_median_of_an_even_count_and_of_nothing(session, points):
    assert stats.median_days_to_delivery(session) is None
    card(session, 1, state="delivered", delivered=date(2026, 1, 14))
    card(session, 2, state="delivered", delivered=date(2026, 1, 20))
    session.flush()
    assert stats.median_days_to_delivery(session) == 7


def test_recent_use_share(session, population):
    assert stats.recent_use(session, now=NOW) == {"days": 90, "delivered": 3, "used": 1, "share": round(1 / 3, 4)}


def test_summary_api_needs_stats_permission(client, session, population):
    reviewer = factories.agent_token(session, "reviewer")
    finance = factories.agent_token(session, "finance")
    session.commit()
    ok = client.get("/api/v1/stats/cards", headers={"Authorization": f"Bearer {reviewer}"})
    assert ok.status_code == 200
    assert ok.json()["national"]["total"] == 9
    assert client.get("/api/v1/stats/cards", headers={"Authorization": f"Bearer {finance}"}).status_code == 403
