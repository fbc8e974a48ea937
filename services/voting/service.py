"""Voting as the platform runs it: settings, migrations, servicer (with its ballot appender),
the consumer of the registry's events (the read model rolls are frozen from), and the timers
that open and close votes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.grpcserver import ServiceDefinition
from wuye.core.service import ConsumerSpec, ServiceSpec, TimerSpec
from wuye.voting.api import ROUTES, SERVICE_NAME, VotingApi
from wuye.voting.commands import READ_MODEL_TOPICS, TOPICS, Voting
from wuye.voting.settings import VotingSettings
from wuye.voting.v1 import voting_service_pb2_grpc as pb_grpc


def definitions(settings: VotingSettings, engine: Engine) -> list[ServiceDefinition]:
    api = VotingApi(Voting(engine, settings))
    return [
        ServiceDefinition(
            SERVICE_NAME,
            pb_grpc.add_VotingServiceServicer_to_server,
            api,
            ROUTES,
            start=api.start,
            stop=api.stop,
        )
    ]


def events(settings: VotingSettings, engine: Engine) -> tuple[tuple[str, ...], dict[str, Handler]]:
    return READ_MODEL_TOPICS, Voting(engine, settings).handlers()


SPEC = ServiceSpec(
    name="voting",
    settings_type=VotingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=definitions,
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
    timers=(
        TimerSpec(
            name="votes-open",
            every_seconds=lambda settings: settings.vote_timer_seconds,
            run=lambda settings, engine: Voting(engine, settings).open_due(),
        ),
        TimerSpec(
            name="votes-close",
            every_seconds=lambda settings: settings.vote_timer_seconds,
            run=lambda settings, engine: Voting(engine, settings).close_due(),
        ),
    ),
)
