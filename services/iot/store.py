"""IoT tables (SQLAlchemy Core): the projects learnt from the registry, gateways, devices with
their last snapshot, alarms. No row is written per reading: readings go to Kafka, and device
state is written as snapshots and alarm transitions."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from wuye.core.db import ColumnUpdate, service_metadata, timestamp_column, utc
from wuye.iot.domain import (
    AlarmKind,
    AlarmState,
    DeviceKind,
    DeviceState,
    GatewayState,
    ReplayWindow,
)

metadata = service_metadata()

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(64), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False),
    # The enterprise serving the project now; empty when none is.
    sa.Column("credit_code", sa.String(18), nullable=False),
    sa.Column("updated_at", timestamp_column(), nullable=False),
)

gateways = sa.Table(
    "gateways",
    metadata,
    sa.Column("gateway_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    # The replay window of acknowledged batch sequences (domain.ReplayWindow), written before
    # any acknowledgement leaves; the bitmap as a signed 64-bit number.
    sa.Column("replay_highest", sa.BigInteger, nullable=False),
    sa.Column("replay_bits", sa.BigInteger, nullable=False),
    sa.Column("clock_skewed", sa.Boolean, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", sa.String(32), primary_key=True),
    sa.Column("gateway_id", sa.String(32), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("location", sa.String(200), nullable=False),
    sa.Column("low", sa.Float, nullable=False),
    sa.Column("high", sa.Float, nullable=False),
    sa.Column("heartbeat_seconds", sa.Float, nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    # The latest snapshot of the device's state.
    sa.Column("last_value", sa.Float, nullable=True),
    sa.Column("last_observed_ns", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("abnormal", sa.Boolean, nullable=False),
    sa.Column("silent", sa.Boolean, nullable=False),
)

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("alarm_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False, index=True),
    sa.Column("gateway_id", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(32), nullable=False),
    # What raised it: "<device or gateway id>/<kind>"; one open alarm per condition.
    sa.Column("condition", sa.String(64), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("observed_at", timestamp_column(), nullable=False),
    sa.Column("raised_at", timestamp_column(), nullable=False),
    sa.Column("acked_at", timestamp_column(), nullable=True),
    sa.Column("acked_by", sa.String(100), nullable=False),
    sa.Column("resolved_at", timestamp_column(), nullable=True),
    sa.Column("resolved_by", sa.String(100), nullable=False),
    sa.Column("escalated_at", timestamp_column(), nullable=True),
    sa.Column("note", sa.String(200), nullable=False),
    sa.Index("ix_alarms_district_code_alarm_id", "district_code", "alarm_id"),
    sa.Index(
        "uq_alarms_open_condition",
        "condition",
        unique=True,
        sqlite_where=sa.text("state != 'RESOLVED'"),
        postgresql_where=sa.text("state != 'RESOLVED'"),
    ),
    sa.Index(
        "ix_alarms_unescalated",
        "raised_at",
        sqlite_where=sa.text("state = 'RAISED' AND escalated_at IS NULL"),
        postgresql_where=sa.text("state = 'RAISED' AND escalated_at IS NULL"),
    ),
)


def condition_of(subject_id: str, kind: AlarmKind) -> str:
    return f"{subject_id}/{kind}"


def to_signed64(bits: int) -> int:
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def to_unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def unix(moment: dt.datetime) -> float:
    return utc(moment).timestamp()


def load_gateways(
    connection: Connection, districts: frozenset[str], window: int
) -> dict[str, GatewayState]:
    rows = connection.execute(
        sa.select(gateways).where(gateways.c.district_code.in_(sorted(districts)))
    )
    return {
        row.gateway_id: GatewayState(
            row.gateway_id,
            row.district_code,
            row.project_id,
            row.key_version,
            ReplayWindow(window, row.replay_highest, to_unsigned64(row.replay_bits)),
            row.clock_skewed,
        )
        for row in rows
    }


def device_state(row, valid: dict[str, tuple[float, float]]) -> DeviceState:
    kind = DeviceKind(row.kind)
    valid_low, valid_high = valid[kind]
    return DeviceState(
        device_id=row.device_id,
        gateway_id=row.gateway_id,
        district=row.district_code,
        project_id=row.project_id,
        kind=kind,
        low=row.low,
        high=row.high,
        valid_low=valid_low,
        valid_high=valid_high,
        heartbeat_seconds=row.heartbeat_seconds,
        registered_at=unix(row.created_at),
        location=row.location,
        last_value=row.last_value,
        last_observed_ns=row.last_observed_ns,
        last_seen=row.last_seen,
        abnormal=row.abnormal,
        silent=row.silent,
    )


def load_devices(
    connection: Connection, districts: frozenset[str], valid: dict[str, tuple[float, float]]
) -> dict[str, DeviceState]:
    rows = connection.execute(
        sa.select(devices).where(devices.c.district_code.in_(sorted(districts)))
    )
    return {row.device_id: device_state(row, valid) for row in rows}


# Built once: the writer runs these many times a second.
def window_writer(engine: Engine) -> ColumnUpdate:
    return ColumnUpdate(
        engine, gateways, "gateway_id", ["replay_highest", "replay_bits", "clock_skewed"]
    )


def save_windows(connection: Connection, writer: ColumnUpdate, states: list[GatewayState]) -> None:
    writer.run(
        connection,
        [(g.gateway_id, g.window.highest, to_signed64(g.window.bits), g.skewed) for g in states],
    )


def snapshot_writer(engine: Engine) -> ColumnUpdate:
    return ColumnUpdate(
        engine,
        devices,
        "device_id",
        ["last_value", "last_observed_ns", "last_seen", "abnormal", "silent"],
    )


def snapshot_row(device: DeviceState) -> tuple:
    """A device's state as the snapshot writes it."""
    return (
        device.device_id,
        device.last_value,
        device.last_observed_ns,
        device.last_seen,
        device.abnormal,
        device.silent,
    )


def open_alarm(connection: Connection, condition: str):
    return connection.execute(
        sa.select(alarms).where(
            alarms.c.condition == condition, alarms.c.state != AlarmState.RESOLVED
        )
    ).first()


def credit_code_of(connection: Connection, project_id: str) -> str:
    return (
        connection.execute(
            sa.select(projects.c.credit_code).where(projects.c.project_id == project_id)
        ).scalar()
        or ""
    )


def upsert_project(
    connection: Connection, *, project_id: str, district_code: str, credit_code: str | None = None
) -> None:
    """What the registry told of a project: where it is and, unless `credit_code` is None (kept
    as it is; none for a new project), who serves it now."""
    values = {"district_code": district_code, "updated_at": dt.datetime.now(dt.UTC)}
    if credit_code is not None:
        values["credit_code"] = credit_code
    updated = connection.execute(
        projects.update().where(projects.c.project_id == project_id).values(values)
    ).rowcount
    if not updated:
        connection.execute(
            projects.insert().values(project_id=project_id, **{"credit_code": "", **values})
        )


def end_service(connection: Connection, *, project_id: str, credit_code: str) -> None:
    """The enterprise `credit_code` no longer serves the project, if it still did."""
    connection.execute(
        projects.update()
        .where(projects.c.project_id == project_id, projects.c.credit_code == credit_code)
        .values(credit_code="", updated_at=dt.datetime.now(dt.UTC))
    )
