"""Settings, read once from the environment (prefix `LABES_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Labes reads; each is an environment variable `LABES_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="LABES_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./labes.db",
        description="SQLAlchemy URL; PostgreSQL in production: postgresql+psycopg://user@host/db",
    )
    environment: str = Field(default="development", description="development, test or production")
    session_hours: int = Field(default=8, description="Lifetime of an agent's login session")
    log_level: str = Field(default="INFO")
    keys_dir: Path = Field(default=Path("./var/keys"), description="Where the fund's private keys live (mode 0600)")
    db_pool_size: int = Field(default=10, description="Connections per app process (PostgreSQL)")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
