"""PostgreSQL's own instructions for a rights check's two statements, counted, not timed.

    LABES_TEST_DATABASE_URL=postgresql+psycopg://postgres@/labes_poc?host=/var/run/postgresql \\
        python bench/pg_cost.py --workdir /tmp/pgcost --runs 500 [--statement read|close]

PostgreSQL's CPU is a third of a rights check's on two shared cores, and its time moves with the machine as the
server's does: a change to the statement of a few per cent does not show in `poc_bench.py`, nor in `pgbench`.
This runs the statement the server sends (the rights check's union read, `care.transactions._CARDS_AND_FILE`, as
compiled for asyncpg: numbered parameters, the generic plan the server's connections keep) in a stand-alone
PostgreSQL backend (`postgres --single`) under valgrind's callgrind, `--runs` times in one PL/pgSQL loop and once,
and prints the difference per run: the backend's instructions to start, run and end the plan (the loop's own cost,
≈ 20,000, included; the protocol's parse and bind messages and sending the rows are not). Like `poc_cpu.py
--instructions` it gives the same count run after run, so the statement's variants can be compared one by one.
`--statement close` counts the check's closing statement instead (`care.transactions._SPEND_AND_AUDIT`: its challenge
spent, its audit event written, its patient's card's last use noted), each run with a new challenge and another
patient's card, as at the counter (one card noted again and again in one transaction would follow a chain of its
own row versions, which no real check does).

The first run copies the database named by LABES_TEST_DATABASE_URL (a `poc_bench.py` population: cards, a
practice, a family with dependants) into a cluster of its own under --workdir (`initdb`, `pg_dump`); later runs
reuse it (delete --workdir to copy again, after a migration or a failed copy). The server binaries are PostgreSQL's own (`pg_config --bindir`, or Debian's /usr/lib/postgresql/*/bin);
run as root, they run as the `postgres` user. Needs valgrind.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine  # noqa: E402

_PARAMETERS = text("""
    SELECT professional.serial, facility.code, patient.serial
    FROM card AS professional
    JOIN practice ON practice.professional_id = professional.holder_professional_id
    JOIN facility ON facility.id = practice.facility_id
    CROSS JOIN LATERAL (SELECT card.serial FROM card JOIN dependant ON dependant.person_id = card.holder_person_id
                        WHERE card.card_type <> 'professional' ORDER BY card.serial LIMIT 1) AS patient
    WHERE professional.card_type = 'professional' ORDER BY professional.serial LIMIT 1""")


def bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        return Path(subprocess.run([found, "--bindir"], check=True, capture_output=True, text=True).stdout.strip())
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))
    if not versions:
        raise SystemExit("PostgreSQL's server binaries were not found (pg_config, /usr/lib/postgresql/*/bin)")
    return Path(versions[-1])


def as_server_user(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `command` as the `postgres` user when this runs as root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{part}'" for part in command)]
    return subprocess.run(command, check=False, capture_output=True, text=True, **kwargs)


def copy_database(source_url: str, data: Path, bin_dir: Path) -> None:
    """Create a cluster in `data` holding a copy of the source database under the same name."""
    data.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data.parent, "postgres")
    socket_dir = data.parent
    for step in ([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                 [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", f"-p 5499 -k {socket_dir} -c listen_addresses=",
                  "-l", str(data.parent / "server.log"), "-w", "start"]):
        done = as_server_user(step)
        if done.returncode != 0:
            raise SystemExit(f"{step[0]} failed:\n{done.stderr[-2000:]}")
    try:
        url = create_engine(source_url).url
        name = url.database
        local = ["-h", str(socket_dir), "-p", "5499", "-U", "postgres"]
        subprocess.run(["createdb", *local, name], check=True)
        source = ["-h", url.host or url.query.get("host", "/var/run/postgresql"), "-U", url.username or "postgres"]
        if url.port:
            source += ["-p", str(url.port)]
        dump = subprocess.Popen(["pg_dump", *source, name], stdout=subprocess.PIPE)
        subprocess.run(["psql", "-q", *local, name], stdin=dump.stdout, check=True, stdout=subprocess.DEVNULL)
        if dump.wait() != 0:
            raise SystemExit("pg_dump failed")
        subprocess.run(["psql", "-q", *local, name, "-c", "VACUUM ANALYZE"], check=True)
    finally:
        as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "stop"])


def loop_of(statement_sql: str, values: dict[str, str], runs: int, *, each_run: str = "", writes: bool = False) -> str:
    """A single-user session running the statement `runs` times in a PL/pgSQL loop, with the server's generic plan.

    `each_run`: assignments made before each run (PL/pgSQL); `writes`: the statement returns one value (RETURNING),
    read INTO a variable, rather than rows counted."""
    declarations = "".join(f"  p{number} {value};\n" for number, value in values.items())
    body = re.sub(r"\$(\d+)", r"p\1", statement_sql)
    run = f"{body} INTO found" if writes else f"SELECT count(*) INTO found FROM ({body}) AS q"
    return ("SET plan_cache_mode = force_generic_plan;\n\n"
            f"DO $labes$\nDECLARE\n{declarations}  found bigint;\n  patients uuid[] := ARRAY(SELECT id FROM card "
            f"WHERE card_type <> 'professional' ORDER BY serial);\nBEGIN\n  FOR i IN 1..{runs} LOOP\n{each_run}"
            f"    {run};\n  END LOOP;\n  RAISE WARNING 'labes rows %', {'1' if writes else 'found'};\nEND\n$labes$;\n\n")


def count(session: str, data: Path, bin_dir: Path, name: str, scratch: Path) -> tuple[int, int]:
    """Run `session` in a stand-alone backend under callgrind; return (instructions, rows the statement read)."""
    script, out = scratch / "session.sql", scratch / "callgrind.out"
    script.write_text(session)
    script.chmod(0o644)
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(bin_dir / "postgres"), "--single",
               "-j", "-D", str(data), name]
    with script.open() as stdin:
        done = as_server_user(command, stdin=stdin)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    rows = re.search(r"labes rows (\d+)", done.stderr + done.stdout)
    if not collected or not rows:
        raise SystemExit(f"the stand-alone backend failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return int(collected.group(1)), int(rows.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, required=True, help="where the copied cluster is kept (reused if there)")
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--on", type=date.fromisoformat, default=date.today(), help="the day of care")
    p.add_argument("--statement", choices=("read", "close"), default="read",
                   help="the check's read (the cards and the patient's file), or its closing statement")
    args = p.parse_args()
    source_url = os.environ.get("LABES_TEST_DATABASE_URL")
    if not source_url or not source_url.startswith("postgresql"):
        raise SystemExit("set LABES_TEST_DATABASE_URL to the PostgreSQL database poc_bench.py loaded")
    if shutil.which("valgrind") is None:
        raise SystemExit("pg_cost.py needs valgrind (Debian: apt-get install valgrind)")
    from labes.care.transactions import _CARDS_AND_FILE, _SPEND_AND_AUDIT

    bin_dir, workdir = bindir(), args.workdir.resolve()
    engine = create_engine(source_url)
    name = engine.url.database
    with engine.connect() as connection:
        found = connection.execute(_PARAMETERS).first()
    engine.dispose()
    if found is None:
        raise SystemExit("the database has no professional's card with a practice and no dependant's card: "
                         "load it with poc_bench.py first")
    professional_card, facility, patient_card = found
    data = workdir / "data"
    if not data.exists():
        copy_database(source_url, data, bin_dir)

    dialect = postgresql.dialect(paramstyle="numeric_dollar")
    if args.statement == "read":
        compiled = _CARDS_AND_FILE["postgresql"].records.compile(dialect=dialect)
        given = {"card": professional_card, "other_card": patient_card, "patient_card": patient_card,
                 "facility": facility, "on": args.on, "year": args.on.year}
        each_run, writes = "", False
    else:
        compiled = _SPEND_AND_AUDIT[True].compile(dialect=dialect)
        given = {"expires_at": "now() + interval '2 minutes'", "now": "now()", "at": "now()",
                 "actor": f"'professional:{professional_card}@{facility}'", "action": "'care:rights:check'",
                 "entity_type": "'person'", "entity_id": "'6f1c7a52-0d7e-4c11-9a7e-2b1f1f5d0e11'", "before": "NULL",
                 "after": f"""'{{"card": "{patient_card}", "facility": "{facility}", "covered": true}}'""",
                 "request_id": "'a1b2c3d4e5f60718293a4b5c6d7e8f90'"}
        number = {key: index for index, key in enumerate(compiled.positiontup, start=1)}
        # A new challenge each run (unique in each session: the transaction's id in it), and another patient's card.
        each_run = (f"    p{number['nonce']} := left(md5(i::text || ':' || txid_current()), 22);\n"
                    f"    p{number['stale_1']} := patients[1 + i % array_length(patients, 1)];\n"
                    f"    p{number['stale_2']} := p{number['stale_1']};\n")
        writes = True
    kinds = {"nonce": "varchar", "stale_1": "uuid", "stale_2": "uuid", "expires_at": "timestamptz", "now": "timestamptz",
             "at": "timestamptz", "before": "json", "after": "json"}
    values = {}
    for position, key in enumerate(compiled.positiontup, start=1):
        if args.statement == "read":
            value = given.get(key, compiled.binds[key].value)  # the LIMITs: their own values
            kind = "date" if isinstance(value, date) else "int" if isinstance(value, int) else "varchar"
            values[position] = f"{kind} := '{value}'"
        else:
            values[position] = f"{kinds.get(key, 'varchar')}" + (f" := {given[key]}" if key in given else "")
    scratch = workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(scratch, "postgres")
    once, rows = count(loop_of(compiled.string, values, 1, each_run=each_run, writes=writes), data, bin_dir, name, scratch)
    many, _ = count(loop_of(compiled.string, values, args.runs + 1, each_run=each_run, writes=writes), data, bin_dir,
                    name, scratch)
    emit({"bench": "pg_cost", "statement": f"rights-check {args.statement}", "runs": args.runs,
          **({"rows": rows} if args.statement == "read" else {}),
          "instructions_per_run": round((many - once) / args.runs), "machine": machine()})

if __name__ == "__main__":
    main()
