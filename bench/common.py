"""What the benchmarks share: a fresh database on either backend, a population on disk, the machine."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from labes.db import make_engine
from labes.migrate import upgrade

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with --members, --db and --seed."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--members", type=int, default=100_000, help="insured members to generate (persons ≈ 2.3 ×)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                   help="sqlite: a fresh temporary file; postgresql: LABES_TEST_DATABASE_URL, emptied first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="where to keep generated files (default: a temp dir)")
    return p


def fresh_database(kind: str, workdir: Path) -> str:
    """Create an empty, migrated database and return its URL."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        url = os.environ.get("LABES_TEST_DATABASE_URL", PG_DEFAULT)
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    upgrade(url)
    return url


def existing_database(kind: str, workdir: Path) -> str | None:
    """Return the URL of the database a previous benchmark left, if there is one, brought to the latest migration
    (the server refuses to start on an older schema, and a run on the previous one would measure old code)."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        url = f"sqlite:///{path}" if path.exists() else None
    else:
        url = os.environ.get("LABES_TEST_DATABASE_URL", PG_DEFAULT)
    if url is not None:
        upgrade(url)
    return url


def workdir(args) -> Path:
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return args.workdir
    return Path(tempfile.mkdtemp(prefix="labes-bench-"))


def population(members: int, seed: int, where: Path) -> Path:
    """Generate (once per size and seed) and return the directory holding members.csv and providers.csv."""
    from labes.registry.generate import generate

    out = where / f"pop-{members}-{seed}"
    if not (out / "members.csv").exists():
        generate(out, members=members, seed=seed)
    return out


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict:
    return {"python": platform.python_version(), "python_build": python_build(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "date": datetime.now(UTC).date().isoformat()}


def python_build() -> str:
    """The interpreter's build (scripts/python_build.py): the same code takes ≈ 8 % more instructions on pyenv's
    default build ("shared") than on Debian's ("static"), so figures from different builds do not compare."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "python_build.py"
    spec = importlib.util.spec_from_file_location("python_build", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def emit(result: dict) -> None:
    """Print the result as one JSON object on the last line."""
    sys.stdout.write(json.dumps(result) + "\n")
