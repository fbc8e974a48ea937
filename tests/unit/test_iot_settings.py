"""IoT settings: GB 50440's numbers as defaults, and ranges that make sense together."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wuye.iot import domain
from wuye.iot.domain import DeviceKind
from wuye.iot.service import SPEC
from wuye.iot.settings import IotSettings

YEAR_MS = 365 * 24 * 3600 * 1000


def test_the_readings_topic_is_created_keeping_records_at_least_a_year():
    configs = SPEC.topic_configs(IotSettings())
    assert int(configs["wuye.iot.reading.v1"]["retention.ms"]) >= YEAR_MS
    assert "wuye.iot.reading.v1" in SPEC.topics


def test_a_normal_range_outside_what_a_kind_may_read_is_refused():
    with pytest.raises(ValidationError, match="HYDRANT_PRESSURE"):
        IotSettings(iot_default_thresholds={"HYDRANT_PRESSURE": {"low": -1.0, "high": 2.0}})


def test_a_kind_without_a_valid_range_is_refused():
    with pytest.raises(ValidationError, match="FIRE_PUMP: every device kind needs"):
        IotSettings(iot_valid_ranges={"HYDRANT_PRESSURE": {"low": 0.0, "high": 10.0}})


def test_gb_50440s_numbers_are_the_defaults():
    settings = IotSettings()

    assert settings.iot_max_false_alarms_per_day == 5  # more than 5 false alarms a day escalates
    assert settings.iot_max_clock_skew_seconds == 5
    assert settings.iot_max_heartbeat_seconds == 2 * 3600


def test_the_default_ranges_are_domain_py_s_for_every_kind():
    settings = IotSettings()

    for kind in DeviceKind:
        normal, valid = settings.iot_default_thresholds[kind], settings.iot_valid_ranges[kind]
        assert (normal.low, normal.high) == domain.DEFAULT_THRESHOLDS[kind]
        assert (valid.low, valid.high) == domain.VALID_RANGES[kind]
