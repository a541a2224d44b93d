"""Assertions the point-of-care tests share."""

from __future__ import annotations

from sqlalchemy import func, select


def row_counts(session, tables) -> dict[str, int]:
    """Count the rows of each table, to show that a refused request wrote nothing."""
    return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) for model in tables}


def problem(response, status: int, code: str) -> dict:
    """Assert `response` is an RFC 9457 problem of `status` and type `code`; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].rsplit("/", 1)[-1] == code, body
    assert body["status"] == status
    return body
