import base64
import json
from pathlib import Path

import pytest

from tessera.conference.roomoptions import RoomOptions
from tessera.conference.store import RoomRecord, ServiceRecord, Store
from tessera.conference.tokens import verify_token
from tessera.portal.cli import main
from tessera.portal.config import load_config


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "tessera.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        '[server]\npublic_host = "mcu.example.org:8443"\nsecure = true\n',
        encoding="utf-8",
    )
    return str(path)


def stored_key(config_file: str, service_id: str = "default") -> str:
    config = load_config(config_file, env={})
    with Store(config.database_path()) as store:
        service = store.get_service(service_id)
    assert service is not None
    return service.key


def run_token(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["token", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_token_is_verifiable_with_stored_key(
    config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_token(
        capsys, "myroom", "--user", "alice", "--role", "presenter", "--config", config_file
    )
    assert status == 0, err
    token = out.strip()
    claims = verify_token(token, stored_key(config_file))
    assert (claims.service, claims.room, claims.user, claims.role) == (
        "default",
        "myroom",
        "alice",
        "presenter",
    )
    envelope = json.loads(base64.b64decode(token))
    assert envelope["host"] == "mcu.example.org:8443"
    assert envelope["secure"] is True


def test_token_lifetime(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_token(
        capsys, "r", "--user", "u", "--role", "viewer", "--config", config_file, "--lifetime", "5"
    )
    assert status == 0
    claims = verify_token(out.strip(), stored_key(config_file))
    with pytest.raises(Exception, match="expired"):
        verify_token(out.strip(), stored_key(config_file), now=claims.expires_at)
    status, _, err = run_token(
        capsys, "r", "--user", "u", "--role", "viewer", "--config", config_file, "--lifetime", "0"
    )
    assert status == 2
    assert "--lifetime" in err


def test_bad_role(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_token(
        capsys, "r", "--user", "u", "--role", "king", "--config", config_file
    )
    assert status == 2
    assert out == ""
    assert "role 'king' is not one of presenter, viewer" in err


def test_role_of_a_stored_room(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_token(capsys, "r", "--user", "u", "--role", "viewer", "--config", config_file)
    config = load_config(config_file, env={})
    options = RoomOptions.model_validate(
        {"name": "board", "roles": [{"role": "chair", "publish": {"audio": True}}]}
    )
    with Store(config.database_path()) as store:
        store.create_room(
            RoomRecord(id="b" * 24, service_id="default", name="board", options=options.to_json())
        )
    status, out, _ = run_token(
        capsys, "board", "--user", "u", "--role", "chair", "--config", config_file
    )
    assert status == 0
    assert verify_token(out.strip(), stored_key(config_file)).room == "board"
    status, _, err = run_token(
        capsys, "b" * 24, "--user", "u", "--role", "presenter", "--config", config_file
    )
    assert status == 2
    assert "not one of chair" in err


def test_other_service(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_token(
        capsys,
        "r",
        "--user",
        "u",
        "--role",
        "viewer",
        "--service",
        "ghost",
        "--config",
        config_file,
    )
    assert status == 2
    assert "service 'ghost' does not exist" in err

    config = load_config(config_file, env={})
    with Store(config.database_path()) as store:
        store.put_service(ServiceRecord(id="tenant", key="t" * 40))
    status, out, _ = run_token(
        capsys,
        "r",
        "--user",
        "u",
        "--role",
        "viewer",
        "--service",
        "tenant",
        "--config",
        config_file,
    )
    assert status == 0
    assert verify_token(out.strip(), "t" * 40).service == "tenant"


def test_bad_user(config_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_token(
        capsys, "r", "--user", "", "--role", "viewer", "--config", config_file
    )
    assert status == 2
    assert "user must be" in err


def test_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = 99999\n", encoding="utf-8")
    status, out, err = run_token(
        capsys, "r", "--user", "u", "--role", "viewer", "--config", str(path)
    )
    assert status == 2
    assert out == ""
    assert err.startswith("tessera: configuration error: server.port:")
    assert str(path) in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_token(
        capsys, "r", "--user", "u", "--role", "viewer", "--config", str(tmp_path / "none.toml")
    )
    assert status == 2
    assert "configuration error" in err


def test_serve_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[log]\nlevel = 'LOUD'\n", encoding="utf-8")
    status = main(["serve", "--config", str(path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "tessera: configuration error: log.level" in err


def test_serve_bad_port_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["serve", "--port", "70000"])
    assert status == 2
    assert "server.port" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["token", "r", "--role", "viewer"])  # --user is required
    assert info.value.code == 2


def test_service_create_show_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'[storage]\ndata_dir = "{tmp_path}"\n')
    assert (
        main(["service", "create", "acme", "--origin", "https://a.example", "--config", str(conf)])
        == 0
    )
    created = capsys.readouterr().out
    assert "id: acme" in created and "https://a.example" in created
    key = next(line.split(": ", 1)[1] for line in created.splitlines() if line.startswith("key:"))
    assert len(key) >= 32
    assert main(["service", "show", "acme", "--config", str(conf)]) == 0
    assert f"key: {key}" in capsys.readouterr().out
    assert main(["service", "list", "--config", str(conf)]) == 0
    assert capsys.readouterr().out.split() == ["acme", "default"]
    assert main(["service", "create", "acme", "--config", str(conf)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["service", "create", "bad id!", "--config", str(conf)]) == 2
    # A token for the new service verifies with its key.
    assert (
        main(
            [
                "token",
                "r1",
                "--user",
                "u",
                "--role",
                "presenter",
                "--service",
                "acme",
                "--config",
                str(conf),
            ]
        )
        == 0
    )
    assert verify_token(capsys.readouterr().out.strip(), key).service == "acme"


def test_read_only_commands_write_nothing(
    config_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first run makes the database (as `tessera serve` would); later reads write nothing.
    assert (
        run_token(capsys, "r", "--user", "u", "--role", "presenter", "--config", config_file)[0]
        == 0
    )
    data = Path(load_config(config_file, env={}).database_path()).parent
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    assert (
        run_token(capsys, "r", "--user", "u", "--role", "presenter", "--config", config_file)[0]
        == 0
    )
    assert main(["service", "show", "--config", config_file]) == 0
    assert main(["service", "list", "--config", config_file]) == 0
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_an_unusable_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'[storage]\ndata_dir = "{tmp_path}"\n')
    (tmp_path / "tessera.sqlite3").write_bytes(b"not a database at all" * 100)
    assert main(["service", "show", "--config", str(conf)]) == 75
    err = capsys.readouterr().err
    assert err.startswith("tessera: Storage unavailable: cannot read") and "Traceback" not in err
