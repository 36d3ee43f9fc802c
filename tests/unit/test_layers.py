"""The layers hold: the import contracts of pyproject.toml, and no import by a bare folder name.

`lint-imports` (scripts/test.sh) checks the same contracts with a readable report; these
tests also show that each contract and the bare-name check catch a planted violation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

ROOT = Path(__file__).resolve().parents[2]
# Folders installed as tessera.<name>: importing one by its bare name works only where the
# repository root is on sys.path (tests), and then it is a second copy of every module.
FOLDERS = frozenset(
    {"portal", "conference", "webrtc_agent", "mixer", "recorder", "ingest", "config", "media"}
)
SKIP_DIRS = frozenset({".venv", "node_modules", "build", ".git", "test-artifacts", "data"})
CONTRACT_TYPES: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "acyclic_siblings": AcyclicSiblingsContract,
    "forbidden": ForbiddenContract,
}


def _configuration() -> dict[str, Any]:
    return read_configuration(str(ROOT / "pyproject.toml"))


def _contract(contract_id: str) -> Contract:
    config = _configuration()
    options = next(c for c in config["contracts_options"] if c.get("id") == contract_id)
    kind = CONTRACT_TYPES[options["type"]]
    return kind(
        name=options["name"],
        session_options=config["session_options"],
        contract_options=options,
    )


def _graph() -> grimp.ImportGraph:
    roots = _configuration()["session_options"]["root_packages"]
    return grimp.build_graph(*roots, cache_dir=None)


CONTRACT_IDS = [
    "layers",
    "no-file-circles",
    "front-ends-call-the-room-service",
    "client-speaks-protocol",
]


def test_every_contract_is_tested() -> None:
    ids = [c.get("id") for c in _configuration()["contracts_options"]]
    assert sorted(ids) == sorted(CONTRACT_IDS)


@pytest.mark.parametrize("contract_id", CONTRACT_IDS)
def test_contract_is_kept(contract_id: str) -> None:
    check = _contract(contract_id).check(_graph(), verbose=False)
    assert check.kept, check.metadata


def test_an_upward_import_breaks_the_layers() -> None:
    graph = _graph()
    graph.add_import(
        importer="tessera.media.packettrack",
        imported="tessera.conference.room",
        line_number=1,
        line_contents="from tessera.conference.room import Room",
    )
    assert not _contract("layers").check(graph, verbose=False).kept


def test_a_sideways_import_between_mixer_and_recorder_breaks_the_layers() -> None:
    graph = _graph()
    graph.add_import(
        importer="tessera.recorder.recording",
        imported="tessera.mixer.mixedstream",
        line_number=1,
        line_contents="from tessera.mixer.mixedstream import MixedStream",
    )
    assert not _contract("layers").check(graph, verbose=False).kept


def test_the_room_service_importing_a_front_end_breaks_the_layers() -> None:
    graph = _graph()
    graph.add_import(
        importer="tessera.conference.room",
        imported="tessera.portal.portal",
        line_number=1,
        line_contents="from tessera.portal.portal import Portal",
    )
    assert not _contract("layers").check(graph, verbose=False).kept


def test_a_front_end_holding_a_media_object_is_refused() -> None:
    graph = _graph()
    # Allowed by the layers (portal is above everything), refused by this contract.
    graph.add_import(
        importer="tessera.portal.rest.streams",
        imported="tessera.mixer.mixedstream",
        line_number=1,
        line_contents="from tessera.mixer.mixedstream import MixedStream",
    )
    assert _contract("layers").check(graph, verbose=False).kept
    assert not _contract("front-ends-call-the-room-service").check(graph, verbose=False).kept


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        # Type-only imports count: the room's protocol of its parent must stay a protocol.
        ("tessera.conference.room", "tessera.conference.service"),
        ("tessera.portal.roompeer", "tessera.portal.peergateway"),
        ("tessera.portal.rest.resource", "tessera.portal.rest.api"),
    ],
)
def test_a_circle_in_the_room_service_or_the_front_ends_is_refused(
    importer: str, imported: str
) -> None:
    graph = _graph()
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="")
    assert not _contract("no-file-circles").check(graph, verbose=False).kept


def test_a_circle_between_two_files_is_refused() -> None:
    graph = _graph()
    # packettrack already imports mediasource; a type-only import back closes a circle.
    graph.add_import(
        importer="tessera.media.mediasource",
        imported="tessera.media.packettrack",
        line_number=1,
        line_contents="from .packettrack import PacketTrack",
    )
    assert not _contract("no-file-circles").check(graph, verbose=False).kept


def test_the_client_importing_the_server_is_refused() -> None:
    graph = _graph()
    graph.add_import(
        importer="tessera_client.peer",
        imported="tessera.portal.binarypack",
        line_number=1,
        line_contents="from tessera.portal import binarypack",
    )
    assert not _contract("client-speaks-protocol").check(graph, verbose=False).kept


def bare_imports(source: str) -> list[str]:
    """Imports of our folders by their bare names (`import portal`, `from mixer.x import y`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in FOLDERS]
    return found


def _python_files() -> Iterator[Path]:
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for path in folder.iterdir():
            if path.is_dir():
                if path.name not in SKIP_DIRS and not path.name.endswith(".egg-info"):
                    stack.append(path)
            elif path.suffix == ".py":
                yield path


def test_nothing_imports_a_folder_by_its_bare_name() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in _python_files()
        if (found := bare_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "import these as tessera.<folder>: " + repr(offenders)


def test_bare_imports_are_found() -> None:
    source = (
        "import os\nimport portal.room\nfrom mixer.layout import Layout\n"
        "from tessera.media import aiortcext\nfrom . import config\n"
        "if TYPE_CHECKING:\n    from webrtc_agent import transport\n"
    )
    assert bare_imports(source) == [
        "line 2: portal.room",
        "line 3: mixer.layout",
        "line 7: webrtc_agent",
    ]
