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
    worker_threads: int = Field(default=40, ge=0, description="Requests one app process handles at once (threads); "
                                "0: one at a time, on the event loop (PostgreSQL, one process more than the cores)")
    db_pool_size: int = Field(default=10, description="Connections per app process (PostgreSQL)")
    async_reads: bool = Field(default=True, description="PostgreSQL: the requests that only read (rights checks) "
                              "await the database on the event loop, so a process serves others meanwhile; "
                              "false: they run as the other requests do")
    telemetry: bool = Field(default=False, description="FastAPI's OpenTelemetry traces, metrics and logs of every "
                            "request, to the OpenTelemetry SDK the process sets up; false: requests do not look it up")
    sms_gateway_url: str | None = Field(default=None, description="SMS operator's HTTP gateway; unset: development gateway (log lines)")
    sms_gateway_username: str = Field(default="", description="Basic-auth user of the SMS gateway")
    sms_gateway_password: str = Field(default="", description="Basic-auth password of the SMS gateway")
    sms_gateway_timeout: float = Field(default=10.0, description="Seconds to wait for the SMS gateway")
    sms_lookups_per_hour: int = Field(default=5, ge=1, description="Look-ups per phone number per rolling hour at 1017")
    fund_address: str = Field(default="", description="The fund's postal address, printed on tax certificates")
    fund_tax_id: str = Field(default="", description="The fund's tax identifier, printed on tax certificates")
    card_return_days: int = Field(default=90, ge=1, description="Days a card waits at a pick-up point before it is returned")
    audit_seal_interval: float = Field(default=0.5, ge=0, description="Seconds between two sealings of the audit "
                                       "trail by each app process; 0: this process does not seal")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
