"""Import a synthetic population (providers, then members and dependants) into a fresh database.

    python bench/import_bench.py --members 1000000 --db postgresql

Prints one JSON object: persons, seconds, persons_per_s, peak_rss_mb (the import's own peak, measured in a
child process so the generator does not count), and the machine.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, fresh_database, machine, parser, peak_rss_mb, population, workdir  # noqa: E402


def run_import(url: str, directory: str, workers: int, queue) -> None:
    from sqlalchemy import func, select
    from sqlalchemy.orm import sessionmaker

    from labes.db import make_engine
    from labes.registry.importer import MembersImport, ProvidersImport
    from labes.registry.models import Person
    from labes.security.audit import Actor

    engine = make_engine(url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    actor = Actor("cli", "bench")
    started = time.perf_counter()
    providers = ProvidersImport(factory, actor=actor).run(Path(directory) / "providers.csv")
    members = MembersImport(factory, actor=actor).run(Path(directory) / "members.csv", workers=workers)
    seconds = time.perf_counter() - started
    with factory() as session:
        persons = session.scalar(select(func.count()).select_from(Person))
    # Peak RSS of this process and of the worker processes it started (they have ended by now).
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put({"seconds": seconds, "persons": persons, "peak_rss_workers_mb": round(children, 1), "rows": members.rows + providers.rows,
               "rejected": members.rejected + providers.rejected, "peak_rss_mb": peak_rss_mb()})


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="import processes (default: every core)")
    args = p.parse_args()
    where = workdir(args)
    started = time.perf_counter()
    directory = population(args.members, args.seed, where)
    generate_s = time.perf_counter() - started
    url = fresh_database(args.db, where)
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(target=run_import, args=(url, str(directory), args.workers, queue))
    child.start()
    result = queue.get()
    child.join()
    emit({"bench": "import", "db": args.db, "members": args.members, "persons": result["persons"],
          "rows": result["rows"], "rejected": result["rejected"], "seconds": round(result["seconds"], 2),
          "persons_per_s": round(result["persons"] / result["seconds"]), "peak_rss_mb": max(result["peak_rss_mb"], result["peak_rss_workers_mb"]),
          "generate_s": round(generate_s, 2), "workers": args.workers, "machine": machine()})


if __name__ == "__main__":
    main()
