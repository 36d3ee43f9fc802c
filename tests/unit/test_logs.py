"""Structured log lines: one event a line, logfmt or JSON, with the ids from extra and context."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import shlex
from pathlib import Path

import pytest

from tessera.portal.config import ConfigError, load_config
from tessera.portal.logs import StructuredFormatter, configure_logging, log_context


def record(msg: str = "stream added", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {
            "name": "tessera.portal.room",
            "levelname": "INFO",
            "levelno": 20,
            "msg": msg,
            "args": args,
        }
    )
    made.__dict__.update(extra)
    return made


def parse_logfmt(line: str) -> dict[str, str]:
    # shlex honours the double quotes logfmt uses around values with spaces.
    return dict(part.split("=", 1) for part in shlex.split(line))


def test_logfmt_line_has_fields_in_order() -> None:
    line = StructuredFormatter("text").format(
        record(stream="s1", room="r1", participant="p1", kinds=["audio", "video"])
    )
    assert "\n" not in line
    keys = [part.split("=", 1)[0] for part in shlex.split(line)]
    assert keys == ["time", "level", "logger", "msg", "room", "participant", "stream", "kinds"]
    fields = parse_logfmt(line)
    assert fields["msg"] == "stream added"
    assert fields["level"] == "info"
    assert (fields["room"], fields["participant"], fields["stream"]) == ("r1", "p1", "s1")
    assert json.loads(fields["kinds"]) == ["audio", "video"]
    assert fields["time"].endswith("Z") and "T" in fields["time"]


def test_logfmt_quotes_and_escapes() -> None:
    line = StructuredFormatter("text").format(
        record('bad offer: "x=1"\nsecond line %s', "arg", user='a b="c"')
    )
    assert "\n" not in line
    fields = parse_logfmt(line)
    assert fields["msg"].startswith('bad offer: "x=1"')
    assert fields["user"] == 'a b="c"'


def test_json_line_and_exception_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = record("request failed", request="publish")
        failed.exc_info = sys.exc_info()
    line = StructuredFormatter("json").format(failed)
    assert "\n" not in line
    event = json.loads(line)
    assert event["msg"] == "request failed" and event["request"] == "publish"
    assert "ValueError: boom" in event["exc"]
    text = StructuredFormatter("text").format(failed)
    assert "\n" not in text and "ValueError: boom" in text


def test_context_ids_and_extra_override() -> None:
    formatter = StructuredFormatter("json")
    with log_context(room="r1", participant="p1", sid=None):
        inner = json.loads(formatter.format(record(stream="s9")))
        with log_context(participant="p2"):
            nested = json.loads(formatter.format(record()))
        overridden = json.loads(formatter.format(record(participant="p3")))
    outside = json.loads(formatter.format(record()))
    assert (inner["room"], inner["participant"], inner["stream"]) == ("r1", "p1", "s9")
    assert "sid" not in inner
    assert nested["participant"] == "p2"
    assert overridden["participant"] == "p3"
    assert "room" not in outside


async def test_context_follows_tasks_started_inside() -> None:
    formatter = StructuredFormatter("json")
    lines: list[dict[str, str]] = []

    async def later() -> None:
        await asyncio.sleep(0)
        lines.append(json.loads(formatter.format(record())))

    with log_context(room="r1"):
        task = asyncio.ensure_future(later())
    await task
    assert lines[0]["room"] == "r1"


def test_configure_logging_writes_structured_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        logging.getLogger("tessera.portal.test").info("hello", extra={"room": "r"})
        logging.getLogger("tessera.portal.test").debug("hidden")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["room"] == "r"


def test_unknown_style_refused() -> None:
    with pytest.raises(ValueError, match="text"):
        StructuredFormatter("xml")  # type: ignore[arg-type]


def test_config_log_format() -> None:
    assert load_config(None, env={}).log.format == "text"
    assert load_config(None, env={"TESSERA_LOG_FORMAT": "json"}).log.format == "json"
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_config(None, env={"TESSERA_LOG_FORMAT": "xml"})


# Keys a LogRecord has already: logging raises KeyError for them in `extra`, but only
# when the level is enabled, so a wrong key breaks the request it logs at INFO only.
RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def test_no_log_call_passes_a_reserved_key_in_extra() -> None:
    root = Path(__file__).resolve().parents[2]
    wrong = []
    for package in ("portal", "webrtc_agent", "mixer", "recorder", "bench"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        wrong += [
                            f"{path.relative_to(root)}:{node.lineno}: {key.value}"
                            for key in keyword.value.keys
                            if isinstance(key, ast.Constant) and key.value in RESERVED
                        ]
    assert not wrong, wrong
