"""The cluster's commands: ``tessera portal``, ``tessera agent [drain NODE]``,
``tessera cluster up`` and ``tessera cluster status``.

Each prints a clear error and exits with status 2 for a usage or configuration
problem (no Redis given, an unreachable one), as the other commands do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tessera.cluster.bus import Bus, BusError
from tessera.cluster.launcher import ClusterLauncher, ClusterPlan
from tessera.cluster.nodes import live_nodes
from tessera.cluster.redisstore import RedisStore
from tessera.cluster.status import format_status, read_status
from tessera.conference.records import ServiceRecord, StoreUnavailable
from tessera.conference.roomoptions import role_names

from . import logs
from .config import Config, load_config
from .serverrecord import ServerRecord, record_path, remove_record, write_record

EXIT_USAGE = 2


class CommandError(Exception):
    """A problem to print as ``tessera: <message>`` (exit status 2)."""


def run(args: argparse.Namespace) -> int:
    """Run one cluster command; its exit status."""
    try:
        if args.command == "cluster":
            if args.cluster_command == "up":
                return _up(args)
            return asyncio.run(_status(args))
        if args.command == "agent" and args.action == "drain":
            return asyncio.run(_drain(args))
        return _role(args)
    except CommandError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _redis_url(args: argparse.Namespace, config: Config) -> str:
    url = getattr(args, "redis", None) or config.cluster.redis
    if not url:
        raise CommandError("no Redis given: pass --redis URL or set [cluster] redis")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise CommandError(f"--redis must be a redis://, rediss:// or unix:// URL, not {url!r}")
    return str(url)


def _role(args: argparse.Namespace) -> int:
    if getattr(args, "node", None) is not None:
        raise CommandError(f"unexpected argument {args.node!r} (did you mean `agent drain`?)")
    port = args.port
    if args.command == "agent" and port is None:
        # An agent's port serves only health and metrics: any free one unless asked, so
        # that agents and portals sharing a config file do not collide.
        port = 0
    config = load_config(args.config, overrides={"server.host": args.host, "server.port": port})
    url = _redis_url(args, config)
    logs.configure_logging(config.log.level, config.log.format)
    if args.command == "portal":
        from .clusterportal import run_portal

        return run_portal(config, url, args.node_id)
    from .agentserver import run_agent

    return run_agent(config, url, args.node_id)


async def _drain(args: argparse.Namespace) -> int:
    if not args.node:
        raise CommandError("agent drain needs the agent's node id (see `tessera cluster status`)")
    config = load_config(args.config)
    url = _redis_url(args, config)
    bus = Bus(url, f"cli-{os.getpid()}")
    try:
        await bus.start(wait=5.0)
        answer = await bus.request(args.node, "node.drain", {"draining": not args.undo})
    except BusError as exc:
        raise CommandError(f"cannot drain {args.node}: {exc}") from None
    finally:
        await bus.close()
    state = "draining" if answer.get("draining") else "taking new rooms"
    print(f"{args.node}: {state}; {answer.get('rooms', 0)} room(s) still hosted")
    return 0


async def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    url = _redis_url(args, config)
    redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        status = await read_status(redis)
    except (RedisError, OSError) as exc:
        raise CommandError(f"cannot read the cluster at {url}: {exc}") from None
    finally:
        await redis.aclose()
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status))
    return 0


def _up(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    agents = args.agents or (os.cpu_count() or 1)
    if args.portals < 1 or agents < 1:
        raise CommandError("a cluster needs at least one portal and one agent")
    plan = ClusterPlan(
        portals=args.portals,
        agents=agents,
        host=args.host,
        port=args.port,
        agent_port=args.agent_port,
        redis_port=args.redis_port,
        redis_url=args.redis,
        data_dir=Path(args.data_dir) if args.data_dir else config.data_dir(),
        config=args.config,
    )
    logs.configure_logging(config.log.level, config.log.format)
    # `tessera token` on this machine finds the cluster (its first portal, and the Redis
    # that holds the services) while it runs, as it finds a running `tessera serve`.
    portal = load_config(
        args.config, overrides={"server.host": args.host, "server.port": args.port}
    )
    record = ServerRecord(
        host=portal.advertised_host(),
        secure=portal.server.secure,
        pid=os.getpid(),
        database=str(config.database_path()),
        redis=plan.url,
    )
    where = record_path(config.data_dir())
    write_record(where, record)
    try:
        return asyncio.run(ClusterLauncher(plan).run())
    except KeyboardInterrupt:
        return 130
    finally:
        remove_record(where, record.pid)


def token_facts(
    url: str, service_id: str, room: str
) -> tuple[ServiceRecord, tuple[str, ...], tuple[str, bool] | None]:
    """For ``tessera token`` against a cluster: the service as the cluster's Redis holds
    it, the role names of the room (by id or name; the defaults for an ad-hoc one) and a
    live portal's ``(host:port, https)`` (None when no portal runs)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise CommandError(f"--redis must be a redis://, rediss:// or unix:// URL, not {url!r}")
    return asyncio.run(_token_facts(url, service_id, room))


async def _token_facts(
    url: str, service_id: str, room: str
) -> tuple[ServiceRecord, tuple[str, ...], tuple[str, bool] | None]:
    redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        store = RedisStore(redis)
        service = await store.get_service(service_id)
        if service is None:
            raise CommandError(f"service {service_id!r} does not exist in the cluster at {url}")
        record = await store.get_room(service_id, room)
        if record is None:
            named = await store.find_rooms_by_name(service_id, room, limit=1)
            record = named[0] if named else None
        roles = role_names(record.options if record is not None else None)
        portals = [n.url for n in await live_nodes(redis) if n.role == "portal" and n.url]
    except (RedisError, OSError, StoreUnavailable) as exc:
        raise CommandError(f"cannot read the cluster at {url}: {exc}") from None
    finally:
        await redis.aclose()
    portal = None
    if portals:
        scheme, _, host = portals[0].partition("://")
        portal = (host.rstrip("/"), scheme == "https")
    return service, roles, portal
