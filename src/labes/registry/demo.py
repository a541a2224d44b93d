"""Pick example families from the demo data to show a newcomer where to start."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labes.registry.models import AmenMember, ChronicCondition, CoveragePeriod, Dependant, Member, Person


def demo_examples(session: Session, *, on: date) -> list[tuple[str, str]]:
    """Return (description, CIN of the insured member) for one family of each interesting kind."""
    examples: list[tuple[str, str]] = []

    def first(label: str, query) -> None:
        cin = session.scalar(query.limit(1))
        if cin:
            examples.append((label, cin))

    insured = select(Person.cin).join(Member, Member.person_id == Person.id).where(Member.status == "active")
    for scheme in ("public", "private", "reimbursement"):
        first(f"care scheme: {scheme}", insured.join(CoveragePeriod, CoveragePeriod.member_id == Member.id)
              .where(CoveragePeriod.scheme == scheme).order_by(Person.cin))
    first("family with 3 or more dependants", insured.join(Dependant, Dependant.member_id == Member.id)
          .group_by(Person.cin).having(func.count(Dependant.id) >= 3).order_by(Person.cin))
    first("member with a chronic disease (APCI)", insured.join(ChronicCondition, ChronicCondition.person_id == Person.id)
          .order_by(Person.cin))
    first("student dependant", insured.join(Dependant, Dependant.member_id == Member.id)
          .where(Dependant.student_until.is_not(None)).order_by(Person.cin))
    first("disabled child (no age limit)", insured.join(Dependant, Dependant.member_id == Member.id)
          .where(Dependant.disabled.is_(True)).order_by(Person.cin))
    first("Amen household", insured.join(AmenMember, AmenMember.person_id == Person.id).order_by(Person.cin))
    first("affiliation suspended (not covered)", select(Person.cin).join(Member, Member.person_id == Person.id)
          .where(Member.status == "suspended").order_by(Person.cin))
    return examples
