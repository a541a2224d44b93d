"""The shared base of every API shape."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Schema(BaseModel):
    """Base for request and response bodies: read from ORM objects, refuse unknown fields."""

    model_config = ConfigDict(from_attributes=True, extra="forbid", str_strip_whitespace=True)


class Page(Schema, Generic[T]):
    """One page of results."""

    items: list[T]
    page: int
    page_size: int
    has_more: bool
