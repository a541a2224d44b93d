"""Card issuance speed and the *1017* SMS look-up at national scale.

    python bench/cards_bench.py --cards 1000000 --db postgresql [--workdir DIR --reuse]

1. Loads a synthetic population big enough for `--cards` cards (not timed) and the pick-up points.
2. Issues `--issue` cards with their key pair, certificate and signed printed code on every core
   (`labes.cards.bulk.issue_all`): `cards_per_s`.
3. Fills the card table up to `--cards` rows in realistic states (copies of the issued cards' key material,
   not timed: the look-up never checks signatures), then times `--lookups` `*1017*<CIN>#` messages through
   the same handling as the SMS webhook, each in its own transaction: `sms_p50_ms`, `sms_p99_ms`.
With `--reuse`, steps 1–3 are skipped when the database a previous run left (`--workdir` for SQLite,
LABES_TEST_DATABASE_URL for PostgreSQL) already holds about `--cards` cards; only the look-ups are timed then.
Prints one JSON object on its last line.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, existing_database, fresh_database, machine, parser, population, workdir  # noqa: E402

STATES = [("delivered", 0.30), ("in_use", 0.15), ("at_point", 0.25), ("shipped", 0.05), ("batched", 0.05),
          ("printed", 0.12), ("returned", 0.05), ("blocked", 0.03)]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--cards", type=int, default=1_000_000, help="cards in the table during the look-ups")
    p.add_argument("--issue", type=int, default=20_000, help="cards issued with full cryptography (timed)")
    p.add_argument("--lookups", type=int, default=5000)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--reuse", action="store_true",
                   help="time only the look-ups, in the database a previous run left, if it holds --cards cards")
    args = p.parse_args()

    from sqlalchemy import func, select
    from sqlalchemy.orm import sessionmaker

    from labes.cards.models import Card
    from labes.db import make_engine

    where = workdir(args)
    url = existing_database(args.db, where) if args.reuse else None
    factory = sessionmaker(bind=make_engine(url), expire_on_commit=False) if url else None
    issued = None
    if factory is not None:
        try:
            with factory() as session:
                have = session.scalar(select(func.count()).select_from(Card))
        except Exception:  # no database, or not migrated
            have = None
        if have is None or abs(have - args.cards) > args.cards // 100:  # issuance may add a few beyond --cards
            factory = None
    if factory is None:
        factory, issued = build(args, where)
    lookups(args, factory, issued)


def build(args, where: Path):
    """Load the population, issue `--issue` cards with cryptography (timed) and fill the table to `--cards`."""
    from sqlalchemy import func, select, text
    from sqlalchemy.orm import sessionmaker

    from labes.cards.bulk import issue_all
    from labes.cards.crypto import init_keys
    from labes.cards.points import generate_points, save_points
    from labes.cards.models import Card, PickupPoint
    from labes.cards.serials import make_serial
    from labes.db import make_engine, session_scope, upsert
    from labes.registry.importer import MembersImport, ProvidersImport
    from labes.registry.models import Person
    from labes.security.audit import Actor

    members = math.ceil(args.cards / 2.25)
    directory = population(members, args.seed, where)
    url = fresh_database(args.db, where)
    factory = sessionmaker(bind=make_engine(url), expire_on_commit=False)
    actor = Actor("cli", "bench")
    ProvidersImport(factory, actor=actor).run(directory / "providers.csv")
    MembersImport(factory, actor=actor).run(directory / "members.csv", workers=args.workers)
    with session_scope(factory) as session:
        save_points(session, generate_points(), actor=actor, source="bench")
    keys = where / "keys"
    if not (keys / "card-ca.key.pem").exists():
        init_keys(keys)

    issued = issue_all(factory, actor=actor, keys_dir=keys, output=where / "personalisation.jsonl",
                       workers=args.workers, limit=args.issue)

    # Fill up to --cards rows in realistic states.
    rng = random.Random(args.seed)
    with factory() as session:
        sample = session.scalars(select(Card).limit(1)).one()
        points: dict[str, list] = {}
        for point in session.scalars(select(PickupPoint)):
            points.setdefault(point.governorate, []).append(point.id.hex)
        have = session.scalar(select(func.count()).select_from(Card))
    states, weights = zip(*STATES, strict=True)
    now = datetime.now(UTC)
    after, number = "", 10**8
    while have < args.cards:
        with session_scope(factory) as session:
            query = select(Person.id, Person.first_name_lat, Person.governorate).order_by(Person.id).limit(20_000)
            if after:
                query = query.where(Person.id > uuid.UUID(hex=after))
            people = session.execute(query).all()
            if not people:
                break
            rows = []
            for person_id, name, governorate in people[: args.cards - have]:
                number += 1
                state = rng.choices(states, weights)[0]
                printed = (now - timedelta(days=rng.randint(30, 900))).date()
                delivered = printed + timedelta(days=rng.randint(3, 200)) if state in ("delivered", "in_use") else None
                rows.append({
                    "id": uuid.uuid4().hex, "serial": make_serial("labes", number), "card_type": "labes",
                    "holder_person_id": person_id.hex, "holder_professional_id": None, "holder_name": name,
                    "governorate": governorate, "state": state, "issued_at": now.isoformat(sep=" "),
                    "printed_on": printed.isoformat(), "delivered_on": delivered.isoformat() if delivered else None,
                    "point_id": rng.choice(points[governorate]) if state not in ("printed",) else None,
                    "public_key": sample.public_key, "certificate": sample.certificate,
                    "printed_code": sample.printed_code})
            upsert(session, Card, rows)
            have += len(rows)
            after = people[-1][0].hex
    with session_scope(factory) as session:
        session.execute(text("ANALYZE"))
    return factory, issued


def lookups(args, factory, issued) -> None:
    """Time `--lookups` `*1017*<CIN>#` messages, each in its own transaction, from numbers never used before."""
    from sqlalchemy import func, select

    from labes.cards.models import Card, SmsMessage
    from labes.cards.sms import handle_inbound
    from labes.db import session_scope
    from labes.registry.models import Person

    with session_scope(factory) as session:
        cards = session.scalar(select(func.count()).select_from(Card))
        cins = session.scalars(select(Person.cin).where(Person.cin.is_not(None))
                               .order_by(func.random()).limit(args.lookups)).all()
        first = session.scalar(select(func.count()).select_from(SmsMessage))  # a reused database: new numbers

    timings = []
    for index, cin in enumerate(cins):
        text_in = f"*1017*{cin}#" if index % 3 else f"*1017* {cin} *FR#"
        started = time.perf_counter()
        with session_scope(factory) as session:
            reply = handle_inbound(session, number=f"+2162{(first + index) % 10**7:07d}", text=text_in,
                                   now=datetime.now(UTC))
        timings.append((time.perf_counter() - started) * 1000)
        assert reply
    quantiles = statistics.quantiles(timings, n=100)
    emit({"bench": "cards", "db": args.db, "cards": cards,
          "issued_with_crypto": issued.issued if issued else None,
          "issue_seconds": round(issued.seconds, 2) if issued else None,
          "cards_per_s": round(issued.issued / issued.seconds) if issued else None, "workers": args.workers,
          "lookups": len(timings), "sms_p50_ms": round(quantiles[49], 3), "sms_p99_ms": round(quantiles[98], 3),
          "machine": machine()})


if __name__ == "__main__":
    main()
