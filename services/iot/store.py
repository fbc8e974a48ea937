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
    Resolution,
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
    # When the registry's latest assignment or exit applied here happened: an older one
    # replayed changes nothing.
    sa.Column("service_changed_at", timestamp_column(), nullable=True),
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
    # The gateway's boot epoch the window counts in.
    sa.Column("replay_epoch", sa.BigInteger, nullable=False, server_default="0"),
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
    # domain.Resolution once resolved; empty before.
    sa.Column("resolution", sa.String(16), nullable=False, server_default=""),
    sa.Index("ix_alarms_district_code_alarm_id", "district_code", "alarm_id"),
    # A device's false alarms of a day are counted from here.
    sa.Index("ix_alarms_device_id_raised_at", "device_id", "raised_at"),
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
            ReplayWindow(
                window, row.replay_epoch, row.replay_highest, to_unsigned64(row.replay_bits)
            ),
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
        engine,
        gateways,
        "gateway_id",
        ["replay_epoch", "replay_highest", "replay_bits", "clock_skewed"],
    )


def save_windows(connection: Connection, writer: ColumnUpdate, states: list[GatewayState]) -> None:
    writer.run(
        connection,
        [
            (g.gateway_id, g.window.epoch, g.window.highest, to_signed64(g.window.bits), g.skewed)
            for g in states
        ],
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


def _not_older(happened: dt.datetime):
    """The project's service last changed no later than `happened`: an event of then applies."""
    return sa.or_(
        projects.c.service_changed_at.is_(None), projects.c.service_changed_at <= happened
    )


def add_project(connection: Connection, *, project_id: str, district_code: str) -> None:
    """A project the registry announced; announced again (a replay), it stays as it is."""
    known = connection.execute(
        sa.select(projects.c.project_id).where(projects.c.project_id == project_id)
    ).first()
    if known is None:
        connection.execute(
            projects.insert().values(
                project_id=project_id,
                district_code=district_code,
                credit_code="",
                updated_at=dt.datetime.now(dt.UTC),
                service_changed_at=None,
            )
        )


def assign_service(
    connection: Connection,
    *,
    project_id: str,
    district_code: str,
    credit_code: str,
    happened: dt.datetime,
) -> None:
    """The enterprise `credit_code` serves the project since `happened`, unless something later
    was applied already (an assignment replayed after the enterprise exited)."""
    add_project(connection, project_id=project_id, district_code=district_code)
    connection.execute(
        projects.update()
        .where(projects.c.project_id == project_id, _not_older(happened))
        .values(
            credit_code=credit_code,
            updated_at=dt.datetime.now(dt.UTC),
            service_changed_at=happened,
        )
    )


def end_service(
    connection: Connection, *, project_id: str, credit_code: str, happened: dt.datetime
) -> None:
    """The enterprise `credit_code` no longer serves the project, if it still did and nothing
    later was applied already."""
    connection.execute(
        projects.update()
        .where(
            projects.c.project_id == project_id,
            projects.c.credit_code == credit_code,
            _not_older(happened),
        )
        .values(credit_code="", updated_at=dt.datetime.now(dt.UTC), service_changed_at=happened)
    )


def lock_device(connection: Connection, device_id: str) -> None:
    """Holds the device's row until commit: its false alarms are counted one resolution at a
    time."""
    connection.execute(
        sa.select(devices.c.device_id).where(devices.c.device_id == device_id).with_for_update()
    )


def false_alarms_between(
    connection: Connection, device_id: str, start: dt.datetime, end: dt.datetime
) -> int:
    """The device's alarms raised in [start, end) and resolved as false alarms."""
    return connection.execute(
        sa.select(sa.func.count())
        .select_from(alarms)
        .where(
            alarms.c.device_id == device_id,
            alarms.c.raised_at >= start,
            alarms.c.raised_at < end,
            alarms.c.resolution == Resolution.FALSE_ALARM,
        )
    ).scalar_one()
