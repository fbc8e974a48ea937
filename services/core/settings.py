"""Settings from WUYE_* environment variables (12-factor): one object per service.

Each service subclasses `Settings` to add its own rules' defaults; Helm and `make run` set the
environment, so there is no configuration file to template.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The nine banners/districts of Ordos (鄂尔多斯市). Another city sets WUYE_CITY_DISTRICTS.
ORDOS_DISTRICTS: dict[str, str] = {
    "150602": "东胜区",
    "150603": "康巴什区",
    "150621": "达拉特旗",
    "150622": "准格尔旗",
    "150623": "鄂托克前旗",
    "150624": "鄂托克旗",
    "150625": "杭锦旗",
    "150626": "乌审旗",
    "150627": "伊金霍洛旗",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WUYE_", extra="ignore", frozen=True)

    # The service this process runs; each service's settings class fixes it.
    service: str = "wuye"
    # SQLAlchemy URL. Empty: a SQLite file per service under state_dir (the embedded default).
    database_url: str = ""
    # PostgreSQL schema holding this service's tables; empty: the service's name.
    database_schema: str = ""
    database_pool_size: int = Field(default=20, ge=1)
    state_dir: str = ".wuye"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Topics a relay creates where they are missing (with their dead-letter topics). One replica
    # is right only for the development broker.
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)

    city_districts: dict[str, str] = ORDOS_DISTRICTS
    # Deadlines and "today" are the city's calendar days, not UTC's.
    city_timezone: str = "Asia/Shanghai"
    # Districts this instance serves (comma-separated); empty: all of the city's.
    districts: Annotated[tuple[str, ...], NoDecode] = ()
    # How callers reach the instance serving another district, e.g. "registry-{district}:50051";
    # named in the error a request for an unserved district gets.
    district_endpoint_template: str = ""

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Few threads: the GIL runs one at a time, and more only add switching (measured with
    # make bench: 4 served more calls/s than 16). Scale with processes and pods instead.
    grpc_workers: int = Field(default=4, ge=1)
    # Calls beyond this many in progress or queued are refused with RESOURCE_EXHAUSTED.
    grpc_max_concurrent_rpcs: int = Field(default=256, ge=1)
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"
    # A call that took longer is logged at INFO even when it succeeded.
    rpc_slow_seconds: float = Field(default=0.5, gt=0)

    # HMAC key of bearer tokens, and the issuer they carry.
    token_secret: SecretStr = SecretStr("")
    token_issuer: str = "wuye"
    # The key being rotated out: tokens it signed are still accepted until it is removed.
    token_previous_secret: SecretStr = SecretStr("")
    # Key of the keyed hashes that stand in for resident ID numbers and phones.
    pii_key: SecretStr = SecretStr("")

    relay_batch_size: int = Field(default=2000, ge=1)
    # The relay wakes when a command commits; it also looks at the outbox at least this often.
    relay_poll_seconds: float = Field(default=1.0, gt=0)
    # SQLite has no notifications: how often the relay looks for a change of the database files.
    relay_watch_seconds: float = Field(default=0.01, gt=0)
    # How long the active relay's lease runs unless renewed; a dead relay's standby takes over
    # after it. The relay gives each publish half of it.
    relay_lease_seconds: float = Field(default=10.0, gt=0)
    consumer_max_attempts: int = Field(default=5, ge=1)
    # Processed event ids are remembered this long to drop redeliveries.
    inbox_retention_days: int = Field(default=14, ge=1)
    # A Create call's answer is replayed to retries of its request_id this long, then forgotten
    # (checked every idempotency_purge_seconds, beside the relay).
    idempotency_retention_days: int = Field(default=7, ge=1)
    idempotency_purge_seconds: float = Field(default=3600.0, gt=0)

    # Names, addresses, reasons: the text columns hold 200 characters.
    max_text_length: int = Field(default=200, ge=10, le=200)
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=500, ge=1)

    @field_validator("districts", mode="before")
    @classmethod
    def _split_districts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(code.strip() for code in value.split(",") if code.strip())
        return value

    @field_validator("districts")
    @classmethod
    def _known_districts(cls, value: tuple[str, ...], info) -> tuple[str, ...]:
        city = info.data.get("city_districts", ORDOS_DISTRICTS)
        unknown = [code for code in value if code not in city]
        if unknown:
            raise ValueError(f"unknown district codes {unknown}; the city has {sorted(city)}")
        return value

    def local_date(self, moment: dt.datetime) -> dt.date:
        """The city's calendar day at `moment`."""
        return moment.astimezone(ZoneInfo(self.city_timezone)).date()

    @property
    def served_districts(self) -> frozenset[str]:
        return frozenset(self.districts or self.city_districts)

    @property
    def schema(self) -> str:
        return self.database_schema or self.service

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir}/{self.service}.db"
