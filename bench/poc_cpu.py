"""Point-of-care CPU per request, in one process: no HTTP server, no load generator, no other process's noise.

    python bench/poc_cpu.py --members 100000 --db postgresql --workdir DIR --requests 1500

Uses the database and cards `poc_bench.py` left in --workdir (run it first). Signs --requests rights checks,
care sheets or e-prescriptions (not timed), then posts them one after the other straight to the ASGI app and
prints the process's CPU, PostgreSQL's (all its processes: the sealer's and autovacuum's work too) and the wall
time per request. A change's effect shows here when the HTTP benchmark's run-to-run noise
hides it: run old and new in turn.

`--instructions` runs the same under valgrind's callgrind and prints the app's machine instructions per request
(`instructions_per_request`), counted only while the timed requests run. Unlike CPU time, the count does not move
with the machine's speed or with what else it runs: the same code and inputs give the same count to a few parts in
ten thousand, so a change of 1 % shows in one run each. It counts the requests alone: not PostgreSQL's work, nor the
audit sealer's (whose rounds follow the clock, and so how much valgrind slows the requests: it is off for the run).
Takes ≈ 2 minutes (valgrind runs Python ≈ 25 times slower); needs valgrind with its headers and a C compiler.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import uvloop

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


async def post(app, path: str, body: bytes, state: dict | None = None) -> int:
    """Post `body` to `path` of `app` as the server would, with the lifespan's `state` (a copy per request)."""
    scope = {"type": "http", "state": dict(state or {}), "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
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


_TOGGLE = """
#include <valgrind/callgrind.h>
void labes_toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def callgrind_toggle() -> ctypes.CDLL:
    """Build and load `labes_toggle_collect()`: callgrind's client request that starts or stops counting (a no-op
    outside valgrind). Python cannot issue one itself: it is a special instruction sequence, compiled from
    valgrind's header."""
    with tempfile.TemporaryDirectory(prefix="labes-callgrind-") as build:  # loaded, the library needs no file
        source, library = Path(build, "toggle.c"), Path(build, "toggle.so")
        source.write_text(_TOGGLE)
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True)
        return ctypes.CDLL(str(library))


def count_instructions(argv: list[str]) -> dict:
    """Run this script with `argv` under callgrind, counting only the timed requests; return its JSON with
    `instructions_per_request` added."""
    if shutil.which("valgrind") is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        raise SystemExit("--instructions needs valgrind and its headers (Debian: apt-get install valgrind)")
    if shutil.which("cc") is None:
        raise SystemExit("--instructions needs a C compiler as `cc` (Debian: apt-get install gcc)")
    with tempfile.TemporaryDirectory(prefix="labes-callgrind-") as scratch:
        out = Path(scratch, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
                   sys.executable, __file__, *argv, "--under-callgrind"]
        # The same hash seed every run: dict and set layouts, and so the instructions spent on them, stay the same.
        done = subprocess.run(command, check=False, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed:\n{done.stderr[-3000:]}")
        totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["instructions_per_request"] = round(int(totals.group(1)) / result["requests"])
    for key in ("cpu_ms", "wall_ms"):  # valgrind's slowed-down times, not the code's
        result[f"{key}_under_valgrind"] = result.pop(key)
    return result


async def measure(app, path: str, warm: list[bytes], timed: list[bytes], profile: Path | None = None,
                  toggle: ctypes.CDLL | None = None) -> dict:
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waiting
    async with app.router.lifespan_context(app) as state:
        for body in warm:
            await post(app, path, body, state)
        database = cpu_seconds(os.getpgrp())["postgres"]
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        if toggle:
            toggle.labes_toggle_collect()
        statuses = [await post(app, path, body, state) for body in timed]
        if toggle:
            toggle.labes_toggle_collect()
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
    p.add_argument("--instructions", action="store_true",
                   help="count the app's machine instructions per timed request under callgrind (see above)")
    p.add_argument("--under-callgrind", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.instructions:
        emit(count_instructions([arg for arg in sys.argv[1:] if arg != "--instructions"]))
        return

    where = workdir(args)
    url = existing_database(args.db, where)
    cards_dir = where / f"cards-{args.db}-{args.members}"
    if url is None or not any(cards_dir.glob("pro-*.card")):
        raise SystemExit(f"run poc_bench.py --members {args.members} --db {args.db} --workdir {where} first")
    keys_dir = where / "keys"
    os.environ.update({"LABES_DATABASE_URL": url, "LABES_KEYS_DIR": str(keys_dir), "LABES_LOG_LEVEL": "WARNING",
                       "LABES_WORKER_THREADS": "0" if args.db == "postgresql" else "40"})
    if args.under_callgrind:  # the sealer's rounds follow the clock, which valgrind slows: count the requests alone
        os.environ["LABES_AUDIT_SEAL_INTERVAL"] = "0"
    from labes.app import server_app
    from labes.care.transactions import challenge_secret

    terminals, patients = prepare_cards(url, keys_dir, cards_dir, patients=0, doctors=20, seed=args.seed)
    secret = challenge_secret(keys_dir)
    bodies = signed_bodies(terminals, patients, secret, action=args.action, count=args.requests + 50,
                           seed=args.seed if args.under_callgrind else int(time.time()), distinct=args.stale_cards)
    if args.stale_cards:
        from labes.db import make_engine

        engine = make_engine(url)
        age_patients_cards(engine, hours=2)
        engine.dispose()
    toggle = callgrind_toggle() if args.under_callgrind else None
    # On uvloop, and the app as `labes serve` runs it (uvicorn with its standard extras; its start-up heap frozen).
    result = uvloop.run(measure(server_app(), PATHS[args.action], bodies[:50], bodies[50:], args.profile, toggle))
    emit({"bench": "poc_cpu", "db": args.db, "members": args.members, "action": args.action,
          "requests": args.requests, "stale_cards": args.stale_cards, **result, "at": datetime.now(UTC).isoformat(timespec="seconds"),
          "machine": machine()})


if __name__ == "__main__":
    main()
