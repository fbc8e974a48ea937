"""`python -m wuye`: the platform as a whole. `run` starts every service on this machine (what
`make run` does); `token` signs a development bearer token for grpcurl or a script.

One service alone is `python -m wuye.<service> serve|relay|consume|migrate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wuye.core.auth import ROLE_RULES, Reach, Role, issue_token
from wuye.core.ids import resident_id_problem
from wuye.core.pii import OwnerKeys
from wuye.core.settings import Settings
from wuye.launcher import SECRETS_FILE, LaunchOptions, read_secrets_file, run


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def _edge_port(given: int | None, usual: int, grpc_port: int) -> int:
    if given is not None:
        return given
    return 0 if grpc_port == 0 else usual


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wuye",
        description="Wuye (物业): the regulator's platform for property management.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    state_dir_help = "where databases, logs and secrets live (default: $WUYE_STATE_DIR or .wuye)"

    run_parser = commands.add_parser(
        "run",
        help="start the whole platform on this machine (make run)",
        description=(
            "Starts Kafka (Tansu, in memory) unless WUYE_KAFKA_BOOTSTRAP names one, migrates "
            "each service's database (SQLite files in the state dir unless WUYE_DATABASE_URL "
            "is set), starts every service's server, relay and consumers, waits for their "
            "health checks and prints their addresses with an admin token. Ctrl-C stops "
            "everything. Other WUYE_* variables reach every service as they are."
        ),
    )
    run_parser.add_argument("--state-dir", type=Path, metavar="DIR", help=state_dir_help)
    run_parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address every part listens on (default: %(default)s)",
    )
    run_parser.add_argument(
        "--kafka-port",
        type=_port,
        metavar="PORT",
        default=9092,
        help="port of the development Kafka (default: %(default)s); 0 picks a free one",
    )
    run_parser.add_argument(
        "--grpc-port",
        type=_port,
        metavar="PORT",
        default=50051,
        help="gRPC port of the first service (default: %(default)s), the next ones count up; "
        "0 picks free ports",
    )
    run_parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        default=9464,
        help="/metrics port of the first process (default: %(default)s), the next ones count "
        "up; 0 picks free ports",
    )
    run_parser.add_argument(
        "--edge-port",
        type=_port,
        metavar="PORT",
        help="the edge's port: JSON API, gRPC-Web and the pages (default: 8080, or with "
        "--grpc-port 0 a free one); 0 picks a free one",
    )
    run_parser.add_argument(
        "--edge-admin-port",
        type=_port,
        metavar="PORT",
        help="the edge's admin port, /stats/prometheus (default: 9901, or with --grpc-port 0 a "
        "free one); 0 picks a free one",
    )
    run_parser.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        default=60.0,
        help="seconds to wait for every health check (default: %(default)s)",
    )
    run_parser.add_argument(
        "--separate-parts",
        action="store_true",
        help="run each relay, consumer and timers part in a process of its own, as the chart "
        "does (default: one worker process per service beside its server)",
    )

    run_parser.add_argument(
        "--services",
        type=lambda text: tuple(name.strip() for name in text.split(",") if name.strip()),
        metavar="NAME,...",
        default=(),
        help="start only these services and the services they call (default: every service)",
    )

    token_parser = commands.add_parser(
        "token",
        help="print a signed development bearer token",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Prints a bearer token signed with WUYE_TOKEN_SECRET, or else with the secret "
            f"`run` keeps in <state dir>/{SECRETS_FILE}.\n"
            'Use it as: grpcurl -H "authorization: Bearer $(python -m wuye token --role admin)"'
            "\n\nroles, how far they reach and who their subject is:\n"
            + "\n".join(
                f"  {role.value:<20} {'city-wide or' if rule.reach is Reach.CITY else 'only':<12} "
                f"named districts; {rule.subject}"
                for role, rule in ROLE_RULES.items()
            )
        ),
    )
    token_parser.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
        metavar="ROLE",
        help="what it may do: %(choices)s",
    )
    token_parser.add_argument(
        "--district",
        action="append",
        default=[],
        metavar="CODE",
        help="a district it acts for, e.g. 150602 (repeatable); required for the roles that "
        "act in named districts only, none for the others: the whole city",
    )
    token_parser.add_argument(
        "--subject",
        metavar="SUBJECT",
        help="who it speaks for (default: dev-<role>); an enterprise's is its credit code",
    )
    token_parser.add_argument(
        "--id-number",
        metavar="NUMBER",
        help="an owner's resident ID number, or - to read it from standard input: the token's "
        "subject is the owner key the registry computes from it (the number is not printed)",
    )
    token_parser.add_argument(
        "--ttl-hours",
        type=_positive,
        default=12.0,
        metavar="HOURS",
        help="hours it stays valid (default: %(default)s)",
    )
    token_parser.add_argument("--state-dir", type=Path, metavar="DIR", help=state_dir_help)
    return parser


def _print_token(args: argparse.Namespace, settings: Settings, state_dir: Path) -> int:
    unknown = [code for code in args.district if code not in settings.city_districts]
    if unknown:
        known = ", ".join(f"{code} {name}" for code, name in settings.city_districts.items())
        print(f"unknown district code(s) {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return 2
    secret = settings.token_secret.get_secret_value() or read_secrets_file(state_dir).get(
        "WUYE_TOKEN_SECRET", ""
    )
    if not secret:
        print(
            f"no token secret: set WUYE_TOKEN_SECRET, or start the platform once "
            f"(`make run` writes {state_dir / SECRETS_FILE})",
            file=sys.stderr,
        )
        return 1
    role = Role(args.role)
    if ROLE_RULES[role].reach is Reach.DISTRICTS and not args.district:
        print(f"role {role.value} acts in named districts only: give --district", file=sys.stderr)
        return 2
    if role is Role.OWNER:
        subject = _owner_key(args, settings, state_dir)
        if subject is None:
            return 2
    elif args.id_number is not None:
        print("--id-number is for owner tokens only", file=sys.stderr)
        return 2
    else:
        subject = args.subject or f"dev-{role.value}"
    print(
        issue_token(
            secret,
            subject=subject,
            role=role,
            districts=args.district or None,
            issuer=settings.token_issuer,
            ttl_seconds=round(args.ttl_hours * 3600),
        )
    )
    return 0


def _owner_key(args: argparse.Namespace, settings: Settings, state_dir: Path) -> str | None:
    """The owner key of the ID number given, as the registry computes it; None after saying
    what is wrong. Messages never repeat the number."""
    if args.subject:
        print("an owner token's subject is its owner key: give --id-number", file=sys.stderr)
        return None
    number = sys.stdin.readline().strip() if args.id_number == "-" else args.id_number
    if not number:
        print("an owner token needs the owner's --id-number", file=sys.stderr)
        return None
    problem = resident_id_problem(number)
    if problem:
        print(f"--id-number is not a valid resident ID number: {problem}", file=sys.stderr)
        return None
    key = settings.pii_key.get_secret_value() or read_secrets_file(state_dir).get(
        "WUYE_PII_KEY", ""
    )
    if not key:
        print(
            f"no PII key: set WUYE_PII_KEY, or start the platform once "
            f"(`make run` writes {state_dir / SECRETS_FILE})",
            file=sys.stderr,
        )
        return None
    return OwnerKeys(key.encode()).of_person(number)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    settings = Settings()
    state_dir = args.state_dir or Path(settings.state_dir)
    if args.command == "token":
        return _print_token(args, settings, state_dir)
    return run(
        LaunchOptions(
            state_dir=state_dir,
            host=args.host,
            kafka_port=args.kafka_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            # A platform on free gRPC ports (the tests', the benchmarks') stays off the edge's
            # usual ports too.
            edge_port=_edge_port(args.edge_port, 8080, args.grpc_port),
            edge_admin_port=_edge_port(args.edge_admin_port, 9901, args.grpc_port),
            startup_timeout=args.timeout,
            separate_parts=args.separate_parts,
            services=args.services,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
