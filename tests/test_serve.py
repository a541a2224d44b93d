"""`labes serve` as an operator runs it: a real server process (uvicorn) in front of the app, not a test client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from labes.db import make_engine, session_scope
from labes.migrate import upgrade
from labes.security import audit
from labes.security.models import AuditEvent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`labes serve` exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"`labes serve` did not answer /healthz within 60 s:\n{log.read_text()}")


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    upgrade(url, "head")
    return url


def test_labes_serve_answers_over_http_and_seals_the_audit_trail_when_stopped(database, keys_dir, tmp_path):
    port, log = _free_port(), tmp_path / "server.log"
    env = {**os.environ, "LABES_DATABASE_URL": database, "LABES_KEYS_DIR": str(keys_dir),
           "LABES_AUDIT_SEAL_INTERVAL": "3600", "LABES_LOG_LEVEL": "WARNING"}  # only the sealing at shutdown runs
    labes = Path(sys.executable).with_name("labes")
    with log.open("wb") as output:
        server = subprocess.Popen([str(labes), "serve", "--port", str(port), "--workers", "2"], env=env,
                                  stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    engine = make_engine(database)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base, server, log)

        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok", ready.text
        # A route with a body and a status of its own, through the server's HTTP parsing and both workers' apps.
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
        with session_scope(sessionmaker(engine)) as session:
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
    with session_scope(sessionmaker(engine)) as session:
        unsealed = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq.is_(None)))
        sealed = session.scalar(select(AuditEvent.seq).where(AuditEvent.action == "test:served"))
    assert unsealed == 0 and sealed is not None
    engine.dispose()
