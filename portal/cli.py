"""The ``tessera`` command: run the server, or issue a join token from the shell.

``tessera serve [--config FILE] [--host H] [--port P]``
``tessera portal|agent --redis URL [--config FILE] [--host H] [--port P]`` (a cluster's roles)
``tessera agent drain NODE [--undo]``, ``tessera cluster up|status``
``tessera token ROOM --user NAME --role ROLE [--service ID] [--config FILE] [--lifetime S]``
"""

from __future__ import annotations

import argparse
import importlib
import re
import secrets
import sys
from collections.abc import Callable
from typing import cast

from tessera.conference.roomoptions import role_names
from tessera.conference.store import (
    ServiceRecord,
    Store,
    StoreUnavailable,
    bootstrap_default_service,
    open_for_reading,
)
from tessera.conference.tokens import MAX_CLAIM_LENGTH, issue_token
from tessera.portal import logs
from tessera.portal.config import Config, ConfigError, load_config
from tessera.portal.serverrecord import record_path, running_server

SERVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

__all__ = ["main"]

# Exit status for usage and configuration errors, as argparse uses.
EXIT_USAGE = 2
# The database cannot be used now (its disk full, say): sysexits EX_TEMPFAIL, try later.
EXIT_STORE = 75


class _CommandError(Exception):
    """An error to print as ``tessera: <message>`` before exiting with status 2."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tessera-mcu")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera", description="Tessera: a WebRTC MCU in the style of OWT."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the portal and media server")
    serve.add_argument("--config", metavar="FILE", help="TOML file over config/default.toml")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 = any (server.port)")

    portal = commands.add_parser(
        "portal", help="run a cluster's front ends (Socket.IO, REST, web, PeerJS) on Redis"
    )
    agent = commands.add_parser(
        "agent", help="run a cluster's media agent (hosts rooms) on Redis, or drain one"
    )
    agent.add_argument(
        "action", nargs="?", choices=["drain"], help="drain: no new rooms on agent NODE"
    )
    agent.add_argument("node", nargs="?", metavar="NODE", help="the agent to drain (its node id)")
    agent.add_argument("--undo", action="store_true", help="with drain: take new rooms again")
    for role in (portal, agent):
        role.add_argument("--config", metavar="FILE", help="TOML file over config/default.toml")
        role.add_argument("--redis", metavar="URL", help="the cluster's Redis (cluster.redis)")
        role.add_argument("--host", help="address to listen on (server.host)")
        role.add_argument("--port", type=int, help="port to listen on, 0 = any (server.port)")
        role.add_argument("--node-id", metavar="ID", help="this process's id in the cluster")

    cluster = commands.add_parser("cluster", help="run a whole cluster here, or show one")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    up = cluster_commands.add_parser(
        "up", help="start Redis, M portals and N agents on this machine (Ctrl-C stops them)"
    )
    up.add_argument("--portals", type=int, default=1, help="portal processes (default 1)")
    up.add_argument("--agents", type=int, default=0, help="agent processes (default: one per core)")
    up.add_argument("--host", default="127.0.0.1", help="portals listen here (127.0.0.1)")
    up.add_argument("--port", type=int, default=8080, help="first portal's port (8080)")
    up.add_argument(
        "--agent-port",
        type=int,
        help="first agent's health/metrics port (default: --port + 100; 0: any free ports)",
    )
    up.add_argument("--redis-port", type=int, default=6379, help="the local Redis's port")
    up.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    up.add_argument("--data-dir", metavar="DIR", help="Redis's files (default: the data dir)")
    status = cluster_commands.add_parser("status", help="list portals, agents, rooms and load")
    status.add_argument("--json", action="store_true", help="print JSON")
    for sub in (up, status):
        sub.add_argument("--config", metavar="FILE", help="TOML file over config/default.toml")
    status.add_argument("--redis", metavar="URL", help="the cluster's Redis (cluster.redis)")

    token = commands.add_parser("token", help="print a join token for a room")
    token.add_argument("room", metavar="ROOM", help="room id or room name")
    token.add_argument("--user", required=True, help="user name shown to the others")
    token.add_argument("--role", required=True, help="role in the room, e.g. presenter")
    token.add_argument("--service", metavar="ID", help="service id (default: service.id)")
    token.add_argument("--config", metavar="FILE", help="TOML file over config/default.toml")
    token.add_argument(
        "--lifetime", type=float, metavar="SECONDS", help="validity (default: tokens.lifetime)"
    )
    token.add_argument(
        "--redis",
        metavar="URL",
        help="a cluster's Redis, which holds its services (default: the running `cluster up`'s)",
    )
    service = commands.add_parser("service", help="list, show or create services (tenants)")
    service_commands = service.add_subparsers(dest="service_command", required=True)
    listing = service_commands.add_parser("list", help="print every service id")
    show = service_commands.add_parser("show", help="print a service's id, key and settings")
    show.add_argument("id", nargs="?", metavar="ID", help="service id (default: service.id)")
    create = service_commands.add_parser("create", help="create a service with a new key")
    create.add_argument("id", metavar="ID", help="the new service's id")
    create.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="URL",
        help="allowed browser origin (repeat for more; none = any origin)",
    )
    create.add_argument("--no-adhoc-rooms", action="store_true", help="tokens need existing rooms")
    create.add_argument(
        "--peer-tokens", action="store_true", help="peers must open with a join token"
    )
    for sub in (listing, show, create):
        sub.add_argument("--config", metavar="FILE", help="TOML file over config/default.toml")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tessera`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command in ("portal", "agent", "cluster"):
            # Imported here: `token` and `service` never need Redis or the media stack.
            commands = importlib.import_module("tessera.portal.clustercommands")
            run_command = cast(Callable[[argparse.Namespace], int], commands.run)
            return run_command(args)
        if args.command == "service":
            return _service(args)
        return _token(args)
    except ConfigError as exc:
        print(f"tessera: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _CommandError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"tessera: {exc.message}", file=sys.stderr)
        return EXIT_STORE


def configure_logging(config: Config) -> None:
    """One event a line (logfmt or JSON, with its ids); level and format from ``[log]``."""
    logs.configure_logging(config.log.level, config.log.format)


def _serve(args: argparse.Namespace) -> int:
    config = load_config(
        args.config, overrides={"server.host": args.host, "server.port": args.port}
    )
    configure_logging(config)
    # Imported here: the server pulls in aiortc, aiohttp and the mixer, which `token` never needs.
    server = importlib.import_module("tessera.portal.server")
    run = cast(Callable[[Config], object], server.run)
    try:
        status = run(config)
    except KeyboardInterrupt:
        return 130
    return status if isinstance(status, int) else 0


# A cluster's service, the room's role names and a live portal's (host:port, https).
_ClusterFacts = tuple[ServiceRecord, tuple[str, ...], tuple[str, bool] | None]


def _token(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for name, value in (("room", args.room), ("user", args.user)):
        if not value or len(value) > MAX_CLAIM_LENGTH or not value.isprintable():
            raise _CommandError(f"{name} must be 1 to {MAX_CLAIM_LENGTH} printable characters")
    lifetime = config.tokens.lifetime if args.lifetime is None else args.lifetime
    if not lifetime > 0:
        raise _CommandError("--lifetime must be a positive number of seconds")

    service_id = args.service or config.service.id
    running = running_server(config.data_dir(), config.database_path())
    portal: tuple[str, bool] | None = None
    redis_url = args.redis or (running.redis if running is not None else "")
    if redis_url:
        # A cluster keeps its services in Redis, not in this machine's database.
        commands = importlib.import_module("tessera.portal.clustercommands")
        read = cast(Callable[[str, str, str], _ClusterFacts], commands.token_facts)
        try:
            service, roles, portal = read(redis_url, service_id, args.room)
        except commands.CommandError as exc:
            raise _CommandError(str(exc)) from None
    else:
        store = open_for_reading(config.database_path(), config.service)
        try:
            found = store.get_service(service_id)
            if found is None:
                raise _CommandError(f"service {service_id!r} does not exist")
            service = found
            roles = _roles_of(store, service_id, args.room)
        finally:
            store.close()

    if args.role not in roles:
        raise _CommandError(f"role {args.role!r} is not one of {', '.join(roles)}")
    # The token names the server that runs on this data directory, on whatever port it
    # listens (for a cluster, a live portal); with none running, the configuration's, and
    # stderr says so.
    if running is not None:
        host, secure = running.host, running.secure
    elif portal is not None:
        host, secure = portal
    else:
        host, secure = config.advertised_host(), config.server.secure
        scheme = "https" if secure else "http"
        print(
            f"tessera: no running server found ({record_path(config.data_dir())} is written "
            f"by `tessera serve` while it runs); the token is for {scheme}://{host}, "
            "from the configuration",
            file=sys.stderr,
        )
    token = issue_token(
        service_id=service.id,
        key=service.key,
        room=args.room,
        user=args.user,
        role=args.role,
        host=host,
        secure=secure,
        lifetime=lifetime,
    )
    print(token)
    return 0


def _service(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.service_command == "create":
        store = Store(config.database_path())
        bootstrap_default_service(store, config.service)
    else:
        store = open_for_reading(config.database_path(), config.service)
    try:
        if args.service_command == "list":
            for record in store.list_services():
                print(record.id)
            return 0
        if args.service_command == "create":
            if not SERVICE_ID.fullmatch(args.id):
                raise _CommandError("service id must be 1 to 64 letters, digits, '_' or '-'")
            if store.get_service(args.id) is not None:
                raise _CommandError(f"service {args.id!r} already exists")
            store.put_service(
                ServiceRecord(
                    id=args.id,
                    key=secrets.token_urlsafe(32),
                    allowed_origins=list(args.origin),
                    adhoc_rooms=not args.no_adhoc_rooms,
                    peer_tokens=args.peer_tokens,
                )
            )
        service_id = getattr(args, "id", None) or config.service.id
        shown = store.get_service(service_id)
        if shown is None:
            raise _CommandError(f"service {service_id!r} does not exist")
        print(f"id: {shown.id}")
        print(f"key: {shown.key}")
        print(f"allowed_origins: {', '.join(shown.allowed_origins) or '(any)'}")
        print(f"adhoc_rooms: {str(shown.adhoc_rooms).lower()}")
        print(f"peer_tokens: {str(shown.peer_tokens).lower()}")
        return 0
    finally:
        store.close()


def _roles_of(store: Store, service_id: str, room: str) -> tuple[str, ...]:
    """Role names of the stored room named by id or name; the default roles otherwise."""
    record = store.get_room(service_id, room) or store.find_room_by_name(service_id, room)
    return role_names(record.options if record is not None else None)


if __name__ == "__main__":
    sys.exit(main())
