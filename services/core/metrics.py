"""Prometheus metrics shared by every service, and the /metrics endpoint on its own port.

RPC metric names follow go-grpc-prometheus (grpc_server_*), which operations teams' dashboards
already know; the event pipeline's are ours (wuye_*).
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RPC_STARTED = Counter(
    "grpc_server_started", "RPCs started on the server.", ["grpc_service", "grpc_method"]
)
RPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving a request to sending its response.",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)

# Calls this service makes to others (wuye.core.client), named as go-grpc-prometheus names them.
CLIENT_STARTED = Counter(
    "grpc_client_started",
    "RPCs started by this service's clients.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
CLIENT_HANDLED = Counter(
    "grpc_client_handled",
    "RPCs this service's clients completed, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
CLIENT_LATENCY = Histogram(
    "grpc_client_handling_seconds",
    "Time from starting a call to its status, retries included.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)

OUTBOX_PUBLISHED = Counter(
    "wuye_outbox_published_events", "Outbox events published to Kafka.", ["topic"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "wuye_outbox_publish_failures", "Relay rounds that failed to publish and will retry."
)
OUTBOX_BACKLOG = Gauge("wuye_outbox_backlog_events", "Committed events not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "wuye_outbox_oldest_event_age_seconds", "Age of the oldest committed event not yet published."
)
OUTBOX_LATENCY = Histogram(
    "wuye_outbox_publish_latency_seconds",
    "Time from an event's commit to Kafka acknowledging it.",
    buckets=LATENCY_BUCKETS,
)
RELAY_WAKEUPS = Counter(
    "wuye_relay_wakeups",
    "Times the active relay woke to look at its outbox: a commit it was told of, or its safety"
    " poll (rising with events published means commits go unnoticed).",
    ["reason"],
)

CONSUMED = Counter(
    "wuye_consumer_events",
    "Events taken from Kafka, by outcome (handled, duplicate, stale, ignored, dead_lettered).",
    ["topic", "outcome"],
)
CONSUMER_LAG = Gauge(
    "wuye_consumer_lag_records",
    "Records between the consumer's position and the end.",
    ["topic", "partition"],
)
CONSUMER_HANDLE_SECONDS = Histogram(
    "wuye_consumer_handle_seconds",
    "Time to handle one event, transaction included.",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """A scrape is no news: the service's log stays its own."""


def serve_metrics(host: str, port: int) -> int:
    """Start /metrics in a background thread; returns the bound port (0 picks a free one).

    The thread sleeps until a scrape arrives. Only the process's exit ends it, so it does not
    look for a shutdown request twice a second as prometheus_client's own server does."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_type = type("MetricsServer", (_MetricsServer,), {"address_family": family})
    server = make_server(host, port, make_wsgi_app(), server_type, handler_class=_QuietHandler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": None}, name="metrics", daemon=True
    ).start()
    return server.server_address[1]
