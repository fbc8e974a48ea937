"""Settings from WUYE_* environment variables (12-factor): one object per service.

Each service subclasses `Settings` to add its own rules' defaults; Helm and `make run` set the
environment, so there is no configuration file to template.
"""

from __future__ import annotations

import datetime as dt
import json
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
    # How long a consumer's fetch may wait at the broker for new records. Kafka answers as soon
    # as one arrives, so a longer wait only spares it idle requests; the development broker
    # (Tansu) looks again only at halves of the wait, so there it bounds how late a record is
    # seen, and `make run` chooses (3 s: each idle fetch costs Tansu reads of every partition).
    kafka_fetch_wait_ms: int = Field(default=500, ge=10, le=30_000)

    city_districts: dict[str, str] = ORDOS_DISTRICTS
    # Deadlines and "today" are the city's calendar days, not UTC's.
    city_timezone: str = "Asia/Shanghai"
    # Days off and make-up working days the State Council announced for years the calendar
    # package does not know yet (comma-separated dates or ranges, 2027-02-06..2027-02-14). A
    # year counts as known once a holiday of it is listed here.
    extra_holidays: Annotated[tuple[dt.date, ...], NoDecode] = ()
    extra_workdays: Annotated[tuple[dt.date, ...], NoDecode] = ()
    # Districts this instance serves (comma-separated); empty: all of the city's.
    districts: Annotated[tuple[str, ...], NoDecode] = ()
    # How callers reach the instance serving another district, e.g. "registry-{district}:50051";
    # named in the error a request for an unserved district gets.
    district_endpoint_template: str = ""
    # Where the services this one calls listen (wuye.core.client): "credit=credit:50051,..." or
    # JSON. An address with {district} is a per-district deployment. Services not listed are
    # found by service_endpoint_template ({service}, optionally {district}), if set.
    service_endpoints: Annotated[dict[str, str], NoDecode] = {}
    service_endpoint_template: str = ""
    # A call to another service: its deadline unless the caller gives one, how often it is
    # tried while the target is UNAVAILABLE, and how long the service's own token lives.
    client_timeout_seconds: float = Field(default=5.0, gt=0)
    client_max_attempts: int = Field(default=5, ge=2, le=5)
    client_token_ttl_seconds: int = Field(default=300, ge=60)
    client_keepalive_seconds: float = Field(default=30.0, ge=10)

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
    # The relay wakes when a command commits; it also looks at the outbox at least this often
    # (a safety net: a relay at rest wakes only for that and to renew its lease).
    relay_poll_seconds: float = Field(default=5.0, gt=0)
    # How long the active relay's lease runs unless renewed; a dead relay's standby takes over
    # after it. The relay gives each publish half of it.
    relay_lease_seconds: float = Field(default=10.0, gt=0)
    consumer_max_attempts: int = Field(default=5, ge=1)
    # Processed event ids are remembered this long to drop redeliveries, and purged this often
    # (a consumer at rest writes to its database only then).
    inbox_retention_days: int = Field(default=14, ge=1)
    inbox_purge_seconds: float = Field(default=3600.0, gt=0)
    # A Create call's answer is replayed to retries of its request_id this long, then forgotten
    # (checked every idempotency_purge_seconds, beside the relay).
    idempotency_retention_days: int = Field(default=7, ge=1)
    idempotency_purge_seconds: float = Field(default=3600.0, gt=0)

    # Names, addresses, reasons: the text columns hold 200 characters.
    max_text_length: int = Field(default=200, ge=10, le=200)
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=500, ge=1)

    @field_validator("extra_holidays", "extra_workdays", mode="before")
    @classmethod
    def _split_dates(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        days: list[dt.date] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            first, _, last = item.partition("..")
            start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
            if end < start:
                raise ValueError(f"{item}: the range ends before it starts")
            days.extend(start + dt.timedelta(days=n) for n in range((end - start).days + 1))
        return tuple(days)

    @field_validator("service_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if not isinstance(value, str) or value.lstrip().startswith("{"):
            return json.loads(value) if isinstance(value, str) else value
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        missing = [name for name, equals, address in pairs if not equals or not address.strip()]
        if missing:
            raise ValueError(f"{missing}: write service=host:port")
        return {name.strip(): address.strip() for name, _, address in pairs}

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
