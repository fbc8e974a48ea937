import datetime as dt

from wuye.core.kafka import cloudevent_headers, header_map


def headers(**overrides) -> dict[str, str]:
    fields = {
        "event_id": "0b7c6f9e-8d1f-4c55-a2a8-0f3f4f1c9e11",
        "event_type": "wuye.registry.v1.EnterpriseFiled",
        "source": "/wuye/registry",
        "subject": "filings/f-1",
        "time": 1_750_000_000.25,
        "district": "150602",
        "trace_id": "",
    }
    fields.update(overrides)
    return header_map(cloudevent_headers(**fields))


def test_records_carry_the_cloudevents_binary_mode_headers() -> None:
    assert headers() == {
        "ce_specversion": "1.0",
        "ce_id": "0b7c6f9e-8d1f-4c55-a2a8-0f3f4f1c9e11",
        "ce_type": "wuye.registry.v1.EnterpriseFiled",
        "ce_source": "/wuye/registry",
        "ce_subject": "filings/f-1",
        "ce_time": "2025-06-15T15:06:40.250000+00:00",
        "ce_district": "150602",
        "content-type": "application/protobuf",
    }


def test_the_event_time_is_rfc3339_in_utc() -> None:
    moment = dt.datetime.fromisoformat(headers()["ce_time"])
    assert moment.utcoffset() == dt.timedelta(0)
    assert moment.timestamp() == 1_750_000_000.25


def test_the_trace_id_travels_only_when_there_is_one() -> None:
    assert "ce_traceid" not in headers()
    assert headers(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")["ce_traceid"] == (
        "4bf92f3577b34da6a3ce929d0e0e4736"
    )


def test_header_values_that_are_not_utf8_do_not_break_reading() -> None:
    assert header_map([("x", b"\xff")]) == {"x": "\ufffd"}
    assert header_map(None) == {}


def test_a_version_travels_as_a_sequence_that_sorts_as_text_as_it_does_as_a_number() -> None:
    assert "ce_sequence" not in headers()
    sequences = [headers(sequence=version)["ce_sequence"] for version in (1, 9, 10, 2**63 - 1)]
    assert sorted(sequences) == sequences
    assert [int(s) for s in sequences] == [1, 9, 10, 2**63 - 1]
