"""The front ends call the room service only through the Conference Protocol, which
RoomService implements (mypy checks the types; this checks what mypy cannot see: that
each call is a coroutine where the Protocol says so, and that only the assembly of one
process names RoomService)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from tessera.conference.api import Conference
from tessera.conference.roomservice import RoomService

ROOT = Path(__file__).resolve().parents[2]
# The one-process assembly builds the RoomService; every other front-end module gets a
# Conference.
# The assemblies of processes (one process; a cluster's agent) build the room service;
# everything else in portal/ is a front end.
ASSEMBLY = {ROOT / "portal" / "server.py", ROOT / "portal" / "agentserver.py"}


def _members() -> dict[str, object]:
    return {
        name: value
        for name, value in vars(Conference).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }


def test_room_service_implements_every_call_alike() -> None:
    members = _members()
    assert {"join", "back", "get_service", "check_origin", "hls_directory"} <= set(members)
    for name, declared in members.items():
        implemented = inspect.getattr_static(RoomService, name, None)
        if isinstance(declared, property):
            # A plain attribute of each instance (``closing``), set in __init__.
            assert name in RoomService.__init__.__code__.co_names, f"RoomService sets no {name}"
            continue
        assert implemented is not None, f"RoomService has no {name}"
        assert inspect.iscoroutinefunction(declared) == inspect.iscoroutinefunction(implemented), (
            f"{name}: a coroutine in one and not the other"
        )
        wanted = list(inspect.signature(declared).parameters)
        got = list(inspect.signature(implemented).parameters)
        assert wanted == got, f"{name}: parameters {got} where the Protocol has {wanted}"


def test_front_ends_do_not_name_the_room_service_class() -> None:
    offenders = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        if path in ASSEMBLY:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(
                "conference.roomservice"
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], f"front ends must be typed against Conference: {offenders}"
