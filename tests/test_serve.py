"""`labes serve` as an operator runs it: a real server process (uvicorn) in front of the app, not a test client."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from labes.db import make_engine, session_scope
from labes.migrate import upgrade
from labes.security import audit
from labes.security.models import AuditEvent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bench(name: str):
    """A module of bench/ (the point-of-care benchmark starts `labes serve` as an operator would)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    upgrade(url, "head")
    return url


@pytest.fixture
def served_engine(database) -> Iterator[Engine]:
    engine = make_engine(database)
    yield engine
    engine.dispose()


def test_labes_serve_answers_over_http_and_seals_the_audit_trail_when_stopped(database, served_engine, keys_dir, tmp_path):
    port, log = _free_port(), tmp_path / "server.log"
    # Only the sealing at shutdown runs: the first round would come in an hour.
    server = _bench("poc_bench").start_server(database, keys_dir, port, workers=2, pool=5, threads=40, log=log,
                                              env={"LABES_AUDIT_SEAL_INTERVAL": "3600"})
    try:
        base = f"http://127.0.0.1:{port}"

        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok", ready.text
        # A route with a status of its own, through the server's HTTP parsing.
        challenges = [httpx.post(f"{base}/api/v1/care/challenges") for _ in range(4)]
        assert {r.status_code for r in challenges} == {201}
        assert len({r.json()["challenge"] for r in challenges}) == 4
        assert challenges[0].headers["content-type"] == "application/json"
        # The app's own answers pass through unchanged: a problem document, a request id echoed back.
        malformed = httpx.post(f"{base}/api/v1/care/rights-checks", content=b"{not json",
                               headers={"content-type": "application/json", "x-request-id": "terminal-42"})
        assert malformed.status_code == 422 and malformed.headers["x-request-id"] == "terminal-42"
        assert malformed.headers["content-type"].startswith("application/problem+json")
        assert httpx.get(f"{base}/no-such-page").status_code == 404

        # An event written while the server runs is sealed by its workers' last round when it is stopped.
        with session_scope(sessionmaker(served_engine)) as session:
            audit.record(session, actor=audit.Actor("cli", "test"), action="test:served", entity_type="test",
                         entity_id="1")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            pytest.fail(f"`labes serve` did not stop within 30 s of SIGTERM:\n{log.read_text()}")
    assert server.returncode == 0, log.read_text()
    with session_scope(sessionmaker(served_engine)) as session:
        unsealed = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq.is_(None)))
        sealed = session.scalar(select(AuditEvent.seq).where(AuditEvent.action == "test:served"))
    assert unsealed == 0 and sealed is not None
