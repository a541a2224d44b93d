"""Point-of-care throughput: card-signed rights checks and adjudicated care sheets against a real server.

    python bench/poc_bench.py --members 1000000 --db postgresql --seconds 20

Not timed: a synthetic population is loaded (or reused with --reuse), a sample of patients and family
doctors get cards on the spot (their card files kept in --workdir), `labes serve --workers W` starts in
its own processes, and the load generator fetches one challenge per request and has both cards sign
every request in advance; every patient's card is then noted as last used two hours before (as on a real
day). Timed: wrk (a separate C process) posts the signed requests — rights checks, then care sheets — with
--connections open connections for --seconds each (each request formatted before the clock starts), and the
bare `/healthz` rate of the same server (the framework's ceiling). Prints one JSON object as its last line, with
the CPU a request took of the server's processes, of PostgreSQL's and of wrk's (`*_load_cpu_ms`): all three share
the machine.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, existing_database, fresh_database, machine, parser, population, workdir  # noqa: E402

PIN = "2468"
LUA = """
local bodies = {}
local index = 0
local path = "%(path)s"
function setup(thread)
  thread:set("id", %(threads_counter)s)
end
init = function(args)
  local n = 0
  for line in io.lines("%(bodies)s") do
    if n %% %(threads)d == id then
      bodies[#bodies + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, line)
    end
    n = n + 1
  end
end
request = function()
  index = index + 1
  if index > #bodies then index = 1 end
  return bodies[index]
end
"""


def _sample_patients(session, count: int, seed: int) -> list:
    """A uniform random sample of persons (ids are hashes, so the rows after a random id are a random draw)."""
    from sqlalchemy import select

    from labes.registry.models import Person

    rng = random.Random(seed)
    found: dict = {}
    while len(found) < count:
        start = uuid.UUID(int=rng.getrandbits(128))
        for person_id in session.scalars(select(Person.id).where(Person.id >= start, Person.death_date.is_(None))
                                         .order_by(Person.id).limit(20)):
            found[person_id] = True
    return list(found)[:count]


def prepare_cards(url: str, keys_dir: Path, cards_dir: Path, *, patients: int, doctors: int, seed: int):
    """Issue (once) cards to a sample of patients and to family doctors; return their virtual cards and facilities."""
    from sqlalchemy import select
    from sqlalchemy.orm import sessionmaker

    from labes.cards import service as cards
    from labes.cards.crypto import init_keys, load_authority
    from labes.cards.models import PickupPoint
    from labes.cards.tokens import VirtualCard
    from labes.db import make_engine
    from labes.registry.models import Facility, Practice, Professional
    from labes.security.audit import Actor

    if not (keys_dir / "card-ca.key.pem").exists():
        init_keys(keys_dir)
    cards_dir.mkdir(parents=True, exist_ok=True)
    factory = sessionmaker(bind=make_engine(url), expire_on_commit=False)
    actor = Actor("cli", "bench")
    with factory() as session:
        authority = load_authority(keys_dir)
        point = session.scalar(select(PickupPoint).where(PickupPoint.code == "CBENCH"))
        if point is None:
            point = PickupPoint(code="CBENCH", kind="fund_centre", name_ar="مركز", name_fr="Centre (bench)", governorate="TUN")
            session.add(point)
            session.flush()
        pairs = session.execute(
            select(Professional.licence, Facility.code).join(Practice, Practice.professional_id == Professional.id)
            .join(Facility, Facility.id == Practice.facility_id)
            .where(Professional.kind == "general_practitioner", Professional.contract_status == "active")
            .order_by(Professional.licence).limit(doctors)).all()
        terminals = []
        for licence, facility in pairs:
            path = cards_dir / f"pro-{licence}.card"
            if not path.exists():
                holder = cards.resolve_holder(session, card_type="professional", licence=licence)
                if cards.live_card(session, holder) is None:
                    path.write_bytes(cards.issue_card(session, actor=actor, authority=authority, holder=holder, pin=PIN,
                                                      on_the_spot_at=point).card_file)
            if path.exists():
                terminals.append((VirtualCard.load(path, pin=PIN), facility))
        patient_cards = [VirtualCard.load(p) for p in sorted(cards_dir.glob("patient-*.card"))]
        if len(patient_cards) < patients:
            for person_id in _sample_patients(session, patients - len(patient_cards), seed + len(patient_cards)):
                holder = cards.resolve_holder(session, card_type="labes", person_id=person_id)
                if cards.live_card(session, holder) is not None:
                    continue
                issued = cards.issue_card(session, actor=actor, authority=authority, holder=holder, on_the_spot_at=point)
                path = cards_dir / f"patient-{issued.card.serial}.card"
                path.write_bytes(issued.card_file)
                patient_cards.append(VirtualCard.from_bytes(issued.card_file))
        session.commit()
    return terminals, patient_cards


def start_server(url: str, keys_dir: Path, port: int, workers: int, pool: int, threads: int,
                 log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `labes serve` in its own session and return once it is ready; its warnings and errors go to `log`
    (uvicorn's worker restarts too). `env`: more of the server's settings. tests/test_serve.py starts it here too."""
    env = {**os.environ, "LABES_DATABASE_URL": url, "LABES_KEYS_DIR": str(keys_dir), "LABES_LOG_LEVEL": "WARNING",
           "LABES_DB_POOL_SIZE": str(pool), "LABES_WORKER_THREADS": str(threads), **(env or {})}
    labes = Path(sys.executable).with_name("labes")
    server = subprocess.Popen([str(labes), "serve", "--port", str(port), "--workers", str(workers)], env=env,
                              stdout=subprocess.DEVNULL, stderr=log.open("ab") if log else subprocess.DEVNULL,
                              start_new_session=True)
    import httpx2

    deadline = time.time() + 60
    while time.time() < deadline and server.poll() is None:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx2.TransportError:
            pass
        time.sleep(0.3)
    try:
        os.killpg(server.pid, signal.SIGKILL)  # its workers too: left running, they would hold the port for the next run
    except ProcessLookupError:
        pass
    server.wait(timeout=15)
    said = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise SystemExit(f"the server did not become ready (exit code {server.returncode}; its log: {log})\n{said}")


def request_content(action: str, today: str) -> dict:
    """What a benchmark request carries: nothing for a rights check; a GP consultation for a care sheet (a new client
    key); a week of amoxicillin for an e-prescription."""
    if action == "rights-check":
        return {}
    if action == "prescribe":
        return {"kind": "medicines", "diagnoses": ["J01.9"],
                "lines": [{"code": "500118", "quantity": 2, "dose": "1 g twice a day", "duration_days": 7}]}
    return {"client_key": uuid.uuid4().hex, "kind": "consultation", "care_date": today, "diagnoses": ["J06.9"],
            "lines": [{"code": "C"}]}


def signed_bodies(base: str, terminals, patients, *, action: str, count: int, out: Path) -> None:
    """Fetch `count` challenges and write one signed request body per line (the load generator's work, not timed).

    The lines are written newest first: wrk posts them in order, so the first posted carry the freshest
    challenges and none has expired (2 minutes) by the time it is posted, however long the signing took.
    """
    import httpx2

    from labes.terminal import Terminal

    rng = random.Random(7)
    today = date.today().isoformat()
    lines = []
    with httpx2.Client(base_url=base, timeout=30) as client:
        for _ in range(count):
            card, facility = rng.choice(terminals)
            terminal = Terminal(client=client, facility=facility, card=card)
            patient = rng.choice(patients)
            content = request_content(action, today)
            body = terminal.sign(action, content, patient_card=patient, challenge=terminal.challenge(),
                                 client_key=content.get("client_key"))
            lines.append(json.dumps(body, separators=(",", ":")))
    out.write_text("".join(line + "\n" for line in reversed(lines)))


def cpu_seconds(server_group: int) -> dict[str, float]:
    """CPU time (user + system) used so far by the server's processes and by PostgreSQL's, read from /proc (Linux)."""
    ticks = {"server": 0, "postgres": 0, "server_sys": 0, "postgres_sys": 0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # a process that ended meanwhile
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        group = int(fields[2])  # the process group: `labes serve` and its workers share the server's
        key = "server" if group == server_group else "postgres" if name.startswith("postgres") else None
        if key:
            ticks[key] += int(fields[11]) + int(fields[12])
            ticks[f"{key}_sys"] += int(fields[12])
    return {key: value / os.sysconf("SC_CLK_TCK") for key, value in ticks.items()}


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    return {f"{key}_cpu_ms": round((after[key] - before[key]) * 1000 / max(requests, 1), 3) for key in before}


def wrk(url: str, *, seconds: int, connections: int, threads: int, script: Path | None = None) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's CPU: the only child waited for meanwhile
    load_cpu_s = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    failed = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0
    errors = re.search(r"Socket errors: .*", output)
    return {"per_s": round((requests - failed) / seconds, 1), "requests": requests, "failed": failed,
            "p50_ms": _latency(output, "50%"), "p99_ms": _latency(output, "99%"),
            "socket_errors": errors.group(0) if errors else None,
            "load_cpu_ms": round(load_cpu_s * 1000 / max(requests, 1), 3)}


def _latency(output: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


def lua_script(directory: Path, bodies: Path, path: str, threads: int) -> Path:
    script = directory / f"{bodies.stem}.lua"
    script.write_text(LUA % {"path": path, "bodies": bodies, "threads": threads,
                             "threads_counter": "(function() _G.n = (_G.n or -1) + 1; return _G.n end)()"})
    return script


def age_patients_cards(engine, *, hours: float) -> None:
    """Note every patient's card as last used `hours` ago, as most are on a real day (a patient's card is seldom
    checked twice within the hour): each card's first request of a phase notes its use, and a phase does not
    run faster or slower for how recently the previous run used the same cards."""
    from sqlalchemy import update

    from labes.cards.models import Card

    with engine.begin() as connection:
        connection.execute(update(Card).where(Card.card_type != "professional")
                           .values(last_used_at=datetime.now(UTC) - timedelta(hours=hours)))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seconds", type=int, default=20, help="length of each timed phase")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", type=int, default=None,
                   help="server processes (default on PostgreSQL: one more than the cores, so that a core has work while "
                        "a process waits on the database; on SQLite: the cores)")
    p.add_argument("--threads", type=int, default=None,
                   help="LABES_WORKER_THREADS of each server process (default: 0 on PostgreSQL, handlers on the "
                        "event loop; 40 on SQLite)")
    p.add_argument("--patients", type=int, default=3000,
                   help="patients given a card (a random sample; at 3,000 each is checked a few times a phase, "
                        "which flatters care sheets by ≈ 6 %%: BENCHMARKS.md)")
    p.add_argument("--doctors", type=int, default=20)
    p.add_argument("--rate", type=int, default=1500,
                   help="signed requests prepared per second of each phase (above the rate reached: wrk never posts one twice)")
    p.add_argument("--port", type=int, default=8077)
    p.add_argument("--reuse", action="store_true", help="reuse the database and cards left in --workdir")
    args = p.parse_args()

    from sqlalchemy import func, select
    from sqlalchemy.orm import sessionmaker

    from labes.care.transactions import purge_used_challenges
    from labes.db import make_engine
    from labes.registry.importer import MembersImport, ProvidersImport
    from labes.registry.models import Member, Person
    from labes.security.audit import Actor

    where = workdir(args)
    url = existing_database(args.db, where) if args.reuse else None
    if url:
        with sessionmaker(bind=make_engine(url))() as session:
            if session.scalar(select(func.count()).select_from(Member)) != args.members:
                url = None
    cards_dir = where / f"cards-{args.db}-{args.members}"
    if url is None:
        directory = population(args.members, args.seed, where)
        url = fresh_database(args.db, where)
        factory = sessionmaker(bind=make_engine(url), expire_on_commit=False)
        ProvidersImport(factory, actor=Actor("cli", "bench")).run(directory / "providers.csv")
        MembersImport(factory, actor=Actor("cli", "bench")).run(directory / "members.csv", workers=os.cpu_count() or 1)
        for stale in cards_dir.glob("*.card"):
            stale.unlink()
    keys_dir = where / "keys"
    terminals, patients = prepare_cards(url, keys_dir, cards_dir, patients=args.patients, doctors=args.doctors,
                                        seed=args.seed)
    engine = make_engine(url)
    with sessionmaker(bind=engine)() as session:
        persons = session.scalar(select(func.count()).select_from(Person))
        # As a server's scheduled `labes care purge-challenges` does: earlier runs' used challenges have expired.
        purge_used_challenges(session, now=datetime.now(UTC))
        session.commit()
    if args.db == "postgresql":
        # Earlier runs' dead rows (sealed audit events, cards' last use, families' usage) are cleared first, so
        # runs compare: a server with autovacuum off (as on the benchmark machine) would otherwise slow down
        # from run to run.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")

    threads = args.threads if args.threads is not None else (0 if args.db == "postgresql" else 40)
    args.workers = args.workers or (os.cpu_count() or 2) + (args.db == "postgresql")
    server = start_server(url, keys_dir, args.port, args.workers, pool=max(threads, args.connections // args.workers + 2),
                          threads=threads, log=where / "server.log")
    base = f"http://127.0.0.1:{args.port}"
    results = {}
    try:
        wrk_threads = 2
        results["bare"] = wrk(f"{base}/healthz", seconds=args.seconds, connections=args.connections, threads=wrk_threads)
        scratch = Path(tempfile.mkdtemp(prefix="labes-poc-"))
        for action, path in (("rights-check", "/api/v1/care/rights-checks"), ("care-sheet", "/api/v1/care/care-sheets")):
            bodies = scratch / f"{action}.jsonl"
            prepared = time.perf_counter()
            signed_bodies(base, terminals, patients, action=action, count=args.rate * args.seconds, out=bodies)
            prepare_s = time.perf_counter() - prepared
            age_patients_cards(engine, hours=2)
            before = cpu_seconds(server.pid)
            results[action] = wrk(base + path, seconds=args.seconds, connections=args.connections, threads=wrk_threads,
                                  script=lua_script(scratch, bodies, path, wrk_threads))
            results[action].update(cpu_per_request(before, cpu_seconds(server.pid), results[action]["requests"]))
            results[action]["prepare_s"] = round(prepare_s, 1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a worker still finishing requests: the figures are already taken
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)

    rights, sheets, bare = results["rights-check"], results["care-sheet"], results["bare"]
    emit({"bench": "poc", "db": args.db, "members": args.members, "persons": persons, "patients_with_cards": len(patients),
          "workers": args.workers, "threads": threads, "connections": args.connections, "seconds": args.seconds,
          "rights_checks_per_s": rights["per_s"], "rights_p50_ms": rights["p50_ms"], "rights_p99_ms": rights["p99_ms"],
          "rights_failed": rights["failed"],
          "care_sheets_per_s": sheets["per_s"], "care_sheets_p50_ms": sheets["p50_ms"],
          "care_sheets_p99_ms": sheets["p99_ms"], "care_sheets_failed": sheets["failed"],
          # CPU per request of the server's processes and of PostgreSQL's (the database's share is 0 on SQLite)
          "rights_server_cpu_ms": rights["server_cpu_ms"], "rights_db_cpu_ms": rights["postgres_cpu_ms"],
          "rights_server_sys_cpu_ms": rights["server_sys_cpu_ms"], "rights_db_sys_cpu_ms": rights["postgres_sys_cpu_ms"],
          "care_sheets_server_cpu_ms": sheets["server_cpu_ms"], "care_sheets_db_cpu_ms": sheets["postgres_cpu_ms"],
          # and of the load generator, which shares the machine
          "rights_load_cpu_ms": rights["load_cpu_ms"], "care_sheets_load_cpu_ms": sheets["load_cpu_ms"],
          "bare_per_s": bare["per_s"], "bare_p99_ms": bare["p99_ms"],
          "at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()})


if __name__ == "__main__":
    main()
