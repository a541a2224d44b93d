"""The terminal's local queue of signed care sheets waiting for the link to the fund (a SQLite file)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued (
    client_key TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    body       TEXT NOT NULL,
    queued_at  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    state      TEXT NOT NULL DEFAULT 'waiting'   -- waiting, refused (the fund answered no: kept for the user to see)
)
"""


@dataclass(frozen=True)
class Queued:
    client_key: str
    path: str
    body: dict[str, Any]
    queued_at: str
    attempts: int
    last_error: str | None
    state: str


class OfflineQueue:
    """Signed requests kept on disk until the fund answers them; a row leaves only when the fund has it."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        with self._connect() as connection:
            connection.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # a queued care sheet must survive a power cut
        return connection

    def put(self, *, client_key: str, path: str, body: dict[str, Any]) -> None:
        """Keep a signed request; the same client key twice is kept once."""
        with self._connect() as connection:
            connection.execute("INSERT OR IGNORE INTO queued (client_key, path, body, queued_at) VALUES (?, ?, ?, ?)",
                               (client_key, path, json.dumps(body), datetime.now(UTC).isoformat()))

    def waiting(self) -> list[Queued]:
        return self._select("state = 'waiting'")

    def refused(self) -> list[Queued]:
        return self._select("state = 'refused'")

    def _select(self, where: str) -> list[Queued]:
        with self._connect() as connection:
            rows = connection.execute(f"SELECT client_key, path, body, queued_at, attempts, last_error, state FROM queued "
                                      f"WHERE {where} ORDER BY queued_at, client_key").fetchall()
        return [Queued(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def sent(self, client_key: str) -> None:
        with self._connect() as connection:
            connection.execute("DELETE FROM queued WHERE client_key = ?", (client_key,))

    def failed(self, client_key: str, error: str, *, refused: bool) -> None:
        with self._connect() as connection:
            connection.execute("UPDATE queued SET attempts = attempts + 1, last_error = ?, state = ? WHERE client_key = ?",
                               (error[:500], "refused" if refused else "waiting", client_key))

    def __len__(self) -> int:
        with self._connect() as connection:
            return connection.execute("SELECT count(*) FROM queued WHERE state = 'waiting'").fetchone()[0]
