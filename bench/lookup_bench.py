"""Family lookup by CIN (member or dependant), the registry's point-of-care question, at national scale.

    python bench/lookup_bench.py --members 1000000 --db postgresql

Loads a synthetic population into a fresh database (not timed), then times `--lookups` family views
for random CINs of members and dependants, each in its own session as a request would run.
Prints one JSON object with p50_ms, p99_ms, lookups_per_s and the persons loaded.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, existing_database, fresh_database, machine, parser, population, workdir  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--lookups", type=int, default=5000)
    p.add_argument("--reuse", action="store_true",
                   help="use the database import_bench.py left in --workdir if it holds this population")
    args = p.parse_args()

    from sqlalchemy import func, select
    from sqlalchemy.orm import sessionmaker

    from labes.db import make_engine
    from labes.registry.family import family_view
    from labes.registry.importer import MembersImport, ProvidersImport
    from labes.registry.models import Member, Person
    from labes.registry.service import find_member_for
    from labes.security.audit import Actor

    where = workdir(args)
    directory = population(args.members, args.seed, where)
    url = existing_database(args.db, where) if args.reuse else None
    if url:
        with sessionmaker(bind=make_engine(url))() as session:
            if session.scalar(select(func.count()).select_from(Member)) != args.members:
                url = None
    load_s = 0.0
    if url is None:
        url = fresh_database(args.db, where)
        factory = sessionmaker(bind=make_engine(url), expire_on_commit=False)
        actor = Actor("cli", "bench")
        started = time.perf_counter()
        ProvidersImport(factory, actor=actor).run(directory / "providers.csv")
        MembersImport(factory, actor=actor).run(directory / "members.csv", workers=os.cpu_count() or 1)
        load_s = time.perf_counter() - started
    factory = sessionmaker(bind=make_engine(url), expire_on_commit=False)

    with factory() as session:
        session.connection().exec_driver_sql("ANALYZE")
        persons = session.scalar(select(func.count()).select_from(Person))
        # A uniform sample of CINs: ids are hashes, so the rows after a random id are a random draw.
        rng = random.Random(args.seed)
        cins: list[str] = []
        while len(cins) < args.lookups:
            start = "%032x" % rng.getrandbits(128)
            cins += session.scalars(select(Person.cin).where(Person.id >= start_uuid(start), Person.cin.is_not(None))
                                    .order_by(Person.id).limit(50)).all()
        cins = cins[: args.lookups]

    today = date.today()
    timings = []
    for cin in cins[:200]:  # warm-up: connections, statement caches
        with factory() as session:
            family_view(session, member=find_member_for(session, key=cin), on=today)
    began = time.perf_counter()
    for cin in cins:
        t0 = time.perf_counter()
        with factory() as session:
            view = family_view(session, member=find_member_for(session, key=cin), on=today)
        timings.append((time.perf_counter() - t0) * 1000)
        assert view["people"]
    elapsed = time.perf_counter() - began
    quantiles = statistics.quantiles(timings, n=100)
    emit({"bench": "lookup", "db": args.db, "members": args.members, "persons": persons, "lookups": len(timings),
          "p50_ms": round(quantiles[49], 3), "p99_ms": round(quantiles[98], 3), "max_ms": round(max(timings), 3),
          "lookups_per_s": round(len(timings) / elapsed), "load_s": round(load_s, 1), "machine": machine()})


def start_uuid(hex32: str):
    import uuid

    return uuid.UUID(hex=hex32)


if __name__ == "__main__":
    main()
