"""Point-of-care CPU per request, in one process: no HTTP server, no load generator, no other process's noise.

    python bench/poc_cpu.py --members 100000 --db postgresql --workdir DIR --requests 1500

Uses the database and cards `poc_bench.py` left in --workdir (run it first). Signs --requests rights checks,
care sheets or e-prescriptions (not timed), then posts them one after the other straight to the ASGI app and
prints the process's CPU, PostgreSQL's (all its processes: the sealer's and autovacuum's work too) and the wall
time per request. A change's effect shows here when the HTTP benchmark's run-to-run noise
hides it: run old and new in turn.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import random
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, existing_database, machine, parser, workdir  # noqa: E402
from poc_bench import age_patients_cards, cpu_seconds, prepare_cards, request_content  # noqa: E402

PATHS = {"rights-check": "/api/v1/care/rights-checks", "care-sheet": "/api/v1/care/care-sheets",
         "prescribe": "/api/v1/care/prescriptions"}


def signed_bodies(terminals, patients, secret: bytes, *, action: str, count: int, seed: int,
                  distinct: bool = False) -> list[bytes]:
    """Sign `count` requests by random terminals for random patients (`distinct`: each patient once, as far as
    there are patients)."""
    from labes.care import protocol
    from labes.terminal import Terminal

    rng = random.Random(seed)
    clients = [Terminal("http://unused", facility=facility, card=card) for card, facility in terminals]
    today = date.today().isoformat()
    drawn = rng.sample(patients, min(count, len(patients))) if distinct else []
    out = []
    for index in range(count):
        terminal = rng.choice(clients)
        patient = drawn[index] if index < len(drawn) else rng.choice(patients)
        content = request_content(action, today)
        challenge = protocol.issue_challenge(secret, now=datetime.now(UTC)).token
        body = terminal.sign(action, content, patient_card=patient, challenge=challenge, client_key=content.get("client_key"))
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


async def post(app, path: str, body: bytes) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    received = False
    status = []

    async def receive():
        nonlocal received
        if received:
            await asyncio.Event().wait()  # the client never disconnects
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def planned_anew() -> list[str]:
    """The statements PostgreSQL planned anew at (nearly) every run on the app's connection: prepared, but their
    generic plan looked dearer than planning each time (custom plans), as an array parameter's guessed length can
    make it. Each costs its planning time on every request; at the benchmark's sizes, not a test database's."""
    from labes.db import get_engine

    with get_engine().connect() as connection:
        if connection.dialect.name != "postgresql":
            return []
        rows = connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements "
                                          "WHERE custom_plans > 5 AND custom_plans > generic_plans").all()
    return sorted(" ".join(row.statement.split())[:120] for row in rows)


async def measure(app, path: str, warm: list[bytes], timed: list[bytes], profile: Path | None = None) -> dict:
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waiting
    async with app.router.lifespan_context(app):
        for body in warm:
            await post(app, path, body)
        database = cpu_seconds(os.getpgrp())["postgres"]
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        statuses = [await post(app, path, body) for body in timed]
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        database = cpu_seconds(os.getpgrp())["postgres"] - database
        replanned = planned_anew()
    if profiler:
        profiler.dump_stats(profile)  # the timings are then the profiler's, not the code's
    failed = sum(1 for status in statuses if status >= 300)
    return {"planned_anew": replanned, "cpu_ms": round(cpu * 1000 / len(timed), 3),
            "db_cpu_ms": round(database * 1000 / len(timed), 3), "wall_ms": round(wall * 1000 / len(timed), 3),
            "failed": failed}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--action", choices=sorted(PATHS), default="rights-check")
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--stale-cards", action="store_true",
                   help="as on a real day, when a patient's card is seldom checked twice within the hour: each request "
                        "has its own patient (up to the cards there are), whose card was last used two hours ago, so "
                        "each request notes its card's use")
    p.add_argument("--profile", type=Path, help="write cProfile's statistics of the timed requests to this file "
                   "(for `python -m pstats`; the times printed are then inflated by the profiler)")
    args = p.parse_args()

    where = workdir(args)
    url = existing_database(args.db, where)
    cards_dir = where / f"cards-{args.db}-{args.members}"
    if url is None or not any(cards_dir.glob("pro-*.card")):
        raise SystemExit(f"run poc_bench.py --members {args.members} --db {args.db} --workdir {where} first")
    keys_dir = where / "keys"
    os.environ.update({"LABES_DATABASE_URL": url, "LABES_KEYS_DIR": str(keys_dir), "LABES_LOG_LEVEL": "WARNING",
                       "LABES_WORKER_THREADS": "0" if args.db == "postgresql" else "40"})
    from labes.app import create_app
    from labes.care.transactions import challenge_secret

    terminals, patients = prepare_cards(url, keys_dir, cards_dir, patients=0, doctors=20, seed=args.seed)
    secret = challenge_secret(keys_dir)
    bodies = signed_bodies(terminals, patients, secret, action=args.action, count=args.requests + 50,
                           seed=int(time.time()), distinct=args.stale_cards)
    if args.stale_cards:
        from labes.db import make_engine

        engine = make_engine(url)
        age_patients_cards(engine, hours=2)
        engine.dispose()
    result = asyncio.run(measure(create_app(), PATHS[args.action], bodies[:50], bodies[50:], args.profile))
    emit({"bench": "poc_cpu", "db": args.db, "members": args.members, "action": args.action,
          "requests": args.requests, "stale_cards": args.stale_cards, **result, "at": datetime.now(UTC).isoformat(timespec="seconds"),
          "machine": machine()})


if __name__ == "__main__":
    main()
