"""The gRPC face of the IoT intake: requests in, use cases run, messages out.

The two intake methods take their batches as bytes (see `add_to_server`): a batch's signature
covers the bytes the gateway sent, so the intake checks those rather than a re-serialization.
Gateways carry no bearer token: their signature is their authentication.
"""

from __future__ import annotations

import queue
import threading

import grpc

from wuye.core import context as request_context
from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    Violations,
)
from wuye.core.grpcserver import Route
from wuye.core.paging import next_token, read_page
from wuye.core.wire import check_request_id, check_text, enum_name
from wuye.iot import domain
from wuye.iot.commands import Iot, device_message
from wuye.iot.domain import DeviceKind, Resolution
from wuye.iot.intake import Intake
from wuye.iot.v1 import intake_service_pb2 as pb
from wuye.iot.v1 import intake_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IntakeService"].full_name
_AUTHORITY = tuple(AUTHORITIES)
_READERS = (*_AUTHORITY, Role.INSPECTOR, Role.SERVICE)

ROUTES: dict[str, Route] = {
    "RegisterGateway": Route(allow(*_AUTHORITY), "project_id"),
    "GetGateway": Route(allow(*_READERS), "gateway_id"),
    "RotateGatewaySecret": Route(allow(*_AUTHORITY), "gateway_id"),
    "ResetGatewayWindow": Route(allow(*_AUTHORITY), "gateway_id"),
    "RegisterDevice": Route(allow(*_AUTHORITY), "gateway_id"),
    "GetDevice": Route(allow(*_READERS), "device_id"),
    "ListDevices": Route(allow(*_READERS), "district_code"),
    # Signed by the gateway; the intake checks the signature and the district of every batch.
    "StreamReadings": Route(public()),
    "PostReadings": Route(public()),
    "GetAlarm": Route(allow(*_READERS), "alarm_id"),
    "ListAlarms": Route(allow(*_READERS), "district_code"),
    "AckAlarm": Route(allow(*_AUTHORITY), "alarm_id"),
    "ResolveAlarm": Route(allow(*_AUTHORITY), "alarm_id"),
    "WatchAlarms": Route(allow(*_READERS)),
}

# How often a waiting stream looks whether its caller is still there.
_LIVENESS_SECONDS = 1.0
# What a person may resolve an alarm as; CLEARED is the intake's own.
_RESOLUTIONS = (Resolution.HANDLED, Resolution.FALSE_ALARM)


def _while_caller_listens(get, grpc_context):
    """What a blocking `get` hands out, until the caller of a stream hangs up."""
    while True:
        try:
            yield get(timeout=_LIVENESS_SECONDS)
        except queue.Empty:
            if not grpc_context.is_active():
                return


class _Stream:
    """One StreamReadings call: a reader thread submits batches while the call's own thread
    sends results. At most `window` batches are between submit and result."""

    _END = object()

    def __init__(self, intake: Intake, window: int) -> None:
        self.intake = intake
        self._window = window
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._in_flight = 0
        self._closing: object | None = None  # _END or the error that ends the stream

    def read(self, batches) -> None:
        ending: object = self._END
        try:
            for raw in batches:
                with self._lock:
                    while self._in_flight >= self._window:
                        self._room.wait()
                    self._in_flight += 1
                try:
                    self.intake.submit(raw, "grpc", self._done)
                except DomainError as e:
                    self._done(None)
                    ending = e
                    break
        except grpc.RpcError:
            pass  # the caller went away
        except Exception as e:
            ending = e
        with self._lock:
            self._closing = ending
            if self._in_flight == 0:
                self._results.put(ending)

    def _done(self, result: pb.BatchResult | DomainError | None) -> None:
        if result is not None:
            self._results.put(result)
        with self._lock:
            self._in_flight -= 1
            self._room.notify()
            if self._in_flight == 0 and self._closing is not None:
                self._results.put(self._closing)

    def responses(self, grpc_context):
        """Each result as it comes, those ready together in one response; then the end."""
        for item in _while_caller_listens(self._results.get, grpc_context):
            results = []
            while isinstance(item, pb.BatchResult):
                results.append(item)
                try:
                    item = self._results.get_nowait()
                except queue.Empty:
                    item = None
            if results:
                yield pb.StreamReadingsResponse(results=results)
            if item is self._END:
                return
            if item is not None:
                raise item


class IntakeApi(pb_grpc.IntakeServiceServicer):
    def __init__(self, iot: Iot) -> None:
        self._iot = iot
        self.intake = iot.intake
        self._settings = iot.settings

    # -- gateways and devices

    def RegisterGateway(self, request: pb.RegisterGatewayRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        check_text(v, "name", request.name, self._settings.max_text_length)
        v.raise_if_any()
        return self._iot.register_gateway(request)

    def GetGateway(self, request: pb.GetGatewayRequest, context):
        return self._iot.get_gateway(request.gateway_id)

    def RotateGatewaySecret(self, request: pb.RotateGatewaySecretRequest, context):
        return self._iot.rotate_secret(request.gateway_id)

    def ResetGatewayWindow(self, request: pb.ResetGatewayWindowRequest, context):
        v = Violations()
        check_text(v, "note", request.note, self._settings.max_text_length)
        v.raise_if_any()
        return self._iot.reset_window(request.gateway_id, request.note)

    def RegisterDevice(self, request: pb.RegisterDeviceRequest, context):
        settings = self._settings
        v = Violations()
        check_request_id(v, request.request_id)
        check_text(v, "location", request.location, settings.max_text_length)
        kind_name = enum_name(pb.DeviceKind, "DEVICE_KIND", request.kind)
        low = high = 0.0
        if not kind_name:
            v.add("kind", "is required: one of the DeviceKind values")
        else:
            valid = settings.iot_valid_ranges[kind_name]
            normal = settings.iot_default_thresholds[kind_name]
            given = request.thresholds
            low, high, problems = domain.device_range(
                kind_name,
                given.low if given.HasField("low") else None,
                given.high if given.HasField("high") else None,
                (normal.low, normal.high),
                (valid.low, valid.high),
            )
            for field, problem in problems:
                v.add(field, problem)
        heartbeat, problem = domain.device_heartbeat(
            request.heartbeat_interval.ToNanoseconds() / 1e9
            if request.HasField("heartbeat_interval")
            else None,
            settings.iot_min_heartbeat_seconds,
            float(settings.iot_max_heartbeat_seconds),
        )
        if problem:
            v.add("heartbeat_interval", problem)
        v.raise_if_any()
        return self._iot.register_device(request, DeviceKind(kind_name), low, high, heartbeat)

    def GetDevice(self, request: pb.GetDeviceRequest, context):
        return self._iot.get_device(request.device_id)

    def ListDevices(self, request: pb.ListDevicesRequest, context):
        if not request.district_code:
            raise InvalidArgument([FieldViolation("district_code", "is required")])
        gateway_id = request.gateway_id
        if gateway_id and not gateway_id.startswith(f"{request.district_code}-"):
            raise InvalidArgument(
                [FieldViolation("gateway_id", "is not a gateway of district_code")]
            )
        page = read_page(
            request.page_size,
            request.page_token,
            [request.district_code, gateway_id, request.silent_only],
            self._settings.page_size_default,
            self._settings.page_size_max,
        )
        found = self._iot.list_devices(request.district_code, gateway_id, request.silent_only, page)
        return pb.ListDevicesResponse(
            devices=[device_message(d) for d in found[: page.size]],
            next_page_token=next_token(page, [d.device_id for d in found]),
        )

    # -- readings

    def StreamReadings(self, request_iterator, context):
        stream = _Stream(self.intake, self._settings.iot_stream_window)
        threading.Thread(
            target=stream.read, args=(request_iterator,), name="iot-stream", daemon=True
        ).start()
        yield from stream.responses(context)

    def PostReadings(self, request: bytes, context):
        answer: queue.SimpleQueue = queue.SimpleQueue()
        self.intake.submit(request, "grpc", answer.put)
        try:
            # Kafka's timeout fails a batch back before this; the margin is for the writer.
            result = answer.get(timeout=self._settings.iot_kafka_timeout_seconds + 5)
        except queue.Empty:
            raise Unavailable(
                "BATCH_NOT_STORED", "the batch was not stored in time; send it again"
            ) from None
        if isinstance(result, DomainError):
            raise result
        return result

    # -- alarms

    def GetAlarm(self, request: pb.GetAlarmRequest, context):
        return self._iot.get_alarm(request.alarm_id)

    def ListAlarms(self, request: pb.ListAlarmsRequest, context):
        v = Violations()
        v.check(bool(request.district_code), "district_code", "is required")
        states = []
        for index, state in enumerate(request.states):
            name = enum_name(pb.AlarmState, "ALARM_STATE", state)
            if v.check(bool(name), f"states[{index}]", "is not an alarm state"):
                states.append(name)
        kind = enum_name(pb.AlarmKind, "ALARM_KIND", request.kind)
        v.check(request.kind == 0 or bool(kind), "kind", "is not an alarm kind")
        v.raise_if_any()
        page = read_page(
            request.page_size,
            request.page_token,
            [request.district_code, sorted(states), kind],
            self._settings.page_size_default,
            self._settings.page_size_max,
        )
        alarms = self._iot.list_alarms(request.district_code, states, kind, page)
        keys = [f"{a.raise_time.ToDatetime().isoformat()}+00:00|{a.id}" for a in alarms]
        return pb.ListAlarmsResponse(
            alarms=alarms[: page.size], next_page_token=next_token(page, keys)
        )

    def AckAlarm(self, request: pb.AckAlarmRequest, context):
        v = Violations()
        check_text(v, "note", request.note, self._settings.max_text_length, required=False)
        v.raise_if_any()
        return self._iot.acknowledge(request.alarm_id, request.note)

    def ResolveAlarm(self, request: pb.ResolveAlarmRequest, context):
        v = Violations()
        check_text(v, "note", request.note, self._settings.max_text_length, required=False)
        resolution = enum_name(pb.AlarmResolution, "ALARM_RESOLUTION", request.resolution)
        v.check(
            resolution in _RESOLUTIONS,
            "resolution",
            "is required: ALARM_RESOLUTION_HANDLED or ALARM_RESOLUTION_FALSE_ALARM",
        )
        v.raise_if_any()
        return self._iot.resolve(request.alarm_id, Resolution(resolution), request.note)

    def WatchAlarms(self, request: pb.WatchAlarmsRequest, context):
        call = request_context.current()
        districts = frozenset(request.district_codes) or call.visible_districts()
        for index, district in enumerate(request.district_codes):
            if district not in call.scope.city:
                raise InvalidArgument(
                    [FieldViolation(f"district_codes[{index}]", "is not a district code")]
                )
            call.require_district(district)
        watcher = self.intake.hub.watch(districts)
        try:
            yield from self._iot.open_alarms(districts)
            for alarm in _while_caller_listens(watcher.get, context):
                if alarm is None:
                    raise ResourceExhausted(
                        "WATCHER_TOO_SLOW",
                        "alarms came faster than this stream read them; "
                        "watch again to get the open alarms",
                    )
                yield alarm
        finally:
            self.intake.hub.leave(watcher)


def add_to_server(servicer: IntakeApi, server: grpc.Server) -> None:
    """As the generated registration, except that the intake methods receive the batch's bytes
    as they came."""
    handlers = {
        name: handler
        for name, handler in _generated_handlers(servicer).items()
        if name not in ("StreamReadings", "PostReadings")
    }
    handlers["StreamReadings"] = grpc.stream_stream_rpc_method_handler(
        servicer.StreamReadings,
        request_deserializer=bytes,
        response_serializer=pb.StreamReadingsResponse.SerializeToString,
    )
    handlers["PostReadings"] = grpc.unary_unary_rpc_method_handler(
        servicer.PostReadings,
        request_deserializer=bytes,
        response_serializer=pb.BatchResult.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _generated_handlers(servicer: IntakeApi) -> dict[str, grpc.RpcMethodHandler]:
    """The method handlers the generated code registers, captured rather than retyped."""
    captured: dict[str, grpc.RpcMethodHandler] = {}

    class _Capture:
        def add_generic_rpc_handlers(self, _generic_handlers) -> None:
            pass  # the same handlers come to add_registered_method_handlers

        def add_registered_method_handlers(self, _name, method_handlers) -> None:
            captured.update(method_handlers)

    pb_grpc.add_IntakeServiceServicer_to_server(servicer, _Capture())
    return captured
