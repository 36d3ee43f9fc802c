import tomllib
from importlib import resources
from pathlib import Path

import pydantic
import pytest

from tessera.portal.config import SECTIONS, Config, ConfigError, load_config

GOOD_KEY = "k" * 40


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tessera.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults() -> None:
    config = load_config(env={})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.public_host == ""
    assert config.server.secure is False
    assert config.server.shutdown_timeout == 10.0
    assert config.tokens.lifetime == 180.0
    assert config.tokens.single_use is True
    assert config.portal.login_timeout == 180.0
    assert config.portal.reconnection_keep == 60.0
    assert config.portal.ticket_lifetime == 600.0
    assert config.portal.max_message_bytes == 65536
    assert config.portal.text_max_length == 2048
    assert config.service.id == "default"
    assert config.service.key == ""
    assert config.service.allowed_origins == []
    assert config.service.adhoc_rooms is True
    assert config.service.default_room == "default"
    assert config.webrtc.keyframe_min_interval == 1.0
    assert config.webrtc.stun_servers == []
    assert config.log.level == "INFO"


def test_default_toml_covers_every_key_with_a_comment() -> None:
    text = resources.files("tessera.config").joinpath("default.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert set(data) == set(SECTIONS)
    lines = text.splitlines()
    for section, model in SECTIONS.items():
        assert set(data[section]) == set(model.model_fields), section
        for key in model.model_fields:
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            assert lines[index - 1].startswith("# "), f"{section}.{key} has no comment"


def test_config_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(pydantic.ValidationError):
        config.server.port = 1  # type: ignore[misc]


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[server]\nport = 9000\nshutdown_timeout = 3\n[service]\nallowed_origins = ["https://a.example"]\n',
    )
    config = load_config(path, env={})
    assert config.server.port == 9000
    assert config.server.host == "127.0.0.1"  # untouched keys keep their default
    assert config.server.shutdown_timeout == 3.0  # an int is fine for a float
    assert isinstance(config.server.shutdown_timeout, float)
    assert config.service.allowed_origins == ["https://a.example"]


def test_env_overrides_file_and_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\nhost = '0.0.0.0'\n")
    env = {"TESSERA_SERVER_PORT": "9100", "TESSERA_SERVER_HOST": "10.0.0.1", "HOME": "/x"}
    config = load_config(path, env=env, overrides={"server.port": 9200, "server.host": None})
    assert config.server.port == 9200
    assert config.server.host == "10.0.0.1"  # a None override is ignored


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_env_booleans(value: str, expected: bool) -> None:
    config = load_config(env={"TESSERA_SERVER_SECURE": value})
    assert config.server.secure is expected


def test_env_lists_comma_or_json() -> None:
    origins = "https://a.example, https://b.example"
    config = load_config(env={"TESSERA_SERVICE_ALLOWED_ORIGINS": origins})
    assert config.service.allowed_origins == ["https://a.example", "https://b.example"]
    config = load_config(env={"TESSERA_WEBRTC_STUN_SERVERS": '["stun:stun.example.org:3478"]'})
    assert config.webrtc.stun_servers == ["stun:stun.example.org:3478"]
    config = load_config(env={"TESSERA_SERVICE_ALLOWED_ORIGINS": ""})
    assert config.service.allowed_origins == []


def test_env_numbers_and_strings() -> None:
    env = {
        "TESSERA_TOKENS_LIFETIME": "30",
        "TESSERA_PORTAL_MAX_MESSAGE_BYTES": "1024",
        "TESSERA_LOG_LEVEL": "debug",
        "TESSERA_SERVER_PUBLIC_HOST": "mcu.example:443",
    }
    config = load_config(env=env)
    assert config.tokens.lifetime == 30.0
    assert config.portal.max_message_bytes == 1024
    assert config.log.level == "DEBUG"
    assert config.server.public_host == "mcu.example:443"


def test_unrelated_env_is_ignored() -> None:
    assert load_config(env={"PATH": "/bin", "TESSERAX": "1"}).server.port == 8080


def test_env_bad_integer_names_key_and_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"TESSERA_SERVER_PORT": "abc"})
    assert str(info.value) == (
        "server.port: expected an integer, got 'abc' (from TESSERA_SERVER_PORT)"
    )


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("TESSERA_SERVER_SECURE", "maybe", "server.secure: expected true or false"),
        ("TESSERA_TOKENS_LIFETIME", "soon", "tokens.lifetime: expected a number"),
        ("TESSERA_SERVICE_ALLOWED_ORIGINS", '["a", 1]', "expected a JSON list of strings"),
        ("TESSERA_SERVICE_ALLOWED_ORIGINS", "[oops", "expected a JSON list of strings"),
    ],
)
def test_env_bad_values(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={name: value})
    assert fragment in str(info.value)
    assert name in str(info.value)


def test_env_unknown_key_or_section() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'server\.prot' \(from TESSERA_SERVER_PROT\)"
    ):
        load_config(env={"TESSERA_SERVER_PROT": "1"})
    with pytest.raises(ConfigError, match="TESSERA_SEVER_PORT does not name a setting"):
        load_config(env={"TESSERA_SEVER_PORT": "1"})
    with pytest.raises(ConfigError, match="TESSERA_ does not name a setting"):
        load_config(env={"TESSERA_": "1"})


def test_file_unknown_key_and_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[sever]\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"unknown key 'sever' in {path}"
    path = write(tmp_path, "[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'server\.prot' in .*tessera\.toml"):
        load_config(path, env={})
    path = write(tmp_path, "port = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'port'"):
        load_config(path, env={})


def test_file_section_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'server = "x"\n')
    with pytest.raises(ConfigError, match="server: expected a table"):
        load_config(path, env={})


def test_file_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "8080"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"server.port: expected an integer, got '8080' (from {path})"


def test_file_bool_is_not_an_integer(tmp_path: Path) -> None:
    path = write(tmp_path, "[portal]\ntext_max_length = true\n")
    with pytest.raises(ConfigError, match=r"portal\.text_max_length: expected an integer"):
        load_config(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=f"cannot read configuration file {path}"):
        load_config(path, env={})


def test_toml_syntax_error_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = \n")
    with pytest.raises(ConfigError, match=f"invalid TOML in {path}"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("server.port", 70000, "server.port: Input should be less than or equal to 65535"),
        ("server.port", -1, "server.port: Input should be greater than or equal to 0"),
        ("server.host", "", "server.host"),
        ("server.public_host", "https://x/", "server.public_host"),
        ("server.shutdown_timeout", 0, "server.shutdown_timeout: Input should be greater than 0"),
        ("tokens.lifetime", -5.0, "tokens.lifetime"),
        ("portal.login_timeout", float("inf"), "portal.login_timeout"),
        ("portal.max_message_bytes", 0, "portal.max_message_bytes"),
        ("service.id", "has space", "service.id"),
        ("service.key", "short", "service.key: a service key needs at least 32 characters"),
        ("service.allowed_origins", ["https://a.example/path"], "is not an origin"),
        ("service.default_room", "", "service.default_room"),
        ("webrtc.stun_servers", ["http://stun.example"], "is not a STUN URL"),
        ("webrtc.keyframe_min_interval", 0, "webrtc.keyframe_min_interval"),
        ("log.level", "LOUD", "log.level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("log.level", 3, "log.level"),
    ],
)
def test_bad_values(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={key: value})
    assert fragment in str(info.value)
    assert "(from overrides)" in str(info.value)


def test_port_zero_and_wildcard_origin_allowed() -> None:
    config = load_config(
        env={}, overrides={"server.port": 0, "service.allowed_origins": ["*", "http://h:1"]}
    )
    assert config.server.port == 0


def test_good_key_accepted() -> None:
    assert load_config(env={}, overrides={"service.key": GOOD_KEY}).service.key == GOOD_KEY


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'server\.nope' \(from overrides\)"):
        load_config(env={}, overrides={"server.nope": 1})
    with pytest.raises(ConfigError, match="unknown key 'port'"):
        load_config(env={}, overrides={"port": 1})


def test_data_dir_and_database_path(tmp_path: Path) -> None:
    config = load_config(env={})
    assert config.data_dir({"XDG_DATA_HOME": "/xdg"}) == Path("/xdg/tessera")
    home_default = Path.home() / ".local" / "share" / "tessera"
    assert config.data_dir({}) == home_default
    assert config.data_dir({"XDG_DATA_HOME": "relative"}) == home_default  # ignored per XDG
    assert config.database_path({"XDG_DATA_HOME": "/xdg"}) == Path("/xdg/tessera/tessera.sqlite3")

    config = load_config(env={}, overrides={"storage.data_dir": str(tmp_path)})
    assert config.data_dir() == tmp_path
    assert config.database_path() == tmp_path / "tessera.sqlite3"
    config = load_config(
        env={}, overrides={"storage.data_dir": str(tmp_path), "storage.database": "x/db.sqlite3"}
    )
    assert config.database_path() == tmp_path / "x" / "db.sqlite3"
    config = load_config(env={}, overrides={"storage.database": "/abs/db.sqlite3"})
    assert config.database_path() == Path("/abs/db.sqlite3")
    config = load_config(env={}, overrides={"storage.database": ":memory:"})
    assert str(config.database_path()) == ":memory:"


def test_advertised_host() -> None:
    assert load_config(env={}).advertised_host() == "127.0.0.1:8080"
    assert load_config(env={}).advertised_host(port=51234) == "127.0.0.1:51234"
    config = load_config(env={}, overrides={"server.public_host": "mcu.example.org"})
    assert config.advertised_host() == "mcu.example.org"
    config = load_config(env={}, overrides={"server.host": "::1"})
    assert config.advertised_host() == "[::1]:8080"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SERVER_PORT", "9876")
    assert load_config().server.port == 9876


def test_config_type() -> None:
    assert isinstance(load_config(env={}), Config)


def test_peer_section_defaults_and_checks() -> None:
    config = load_config(None, env={})
    assert config.peer.path == "/peerjs/"
    assert config.peer.alive_timeout == 60.0
    assert config.peer.expire_timeout == 5.0
    assert config.peer.allow_discovery is False
    assert config.service.peer_tokens is False
    env = {"TESSERA_PEER_PATH": "/", "TESSERA_SERVICE_PEER_TOKENS": "true"}
    config = load_config(None, env=env)
    assert config.peer.path == "/" and config.service.peer_tokens is True
    for bad in ("peerjs", "/peerjs", "/a b/"):
        with pytest.raises(ConfigError, match=r"peer\.path"):
            load_config(None, env={"TESSERA_PEER_PATH": bad})


def test_demo_with_public_host_needs_the_demo_on() -> None:
    with pytest.raises(
        ConfigError, match='demo_with_public_host = true has no effect with demo = "off"'
    ):
        load_config(None, env={}, overrides={"web.demo": "off", "web.demo_with_public_host": True})
    config = load_config(None, env={}, overrides={"web.demo_with_public_host": True})
    assert config.web.demo_with_public_host


def test_connection_settings_are_validated() -> None:
    for key, value in (
        ("server.header_timeout", 0),
        ("server.idle_timeout", -1.0),
        ("server.max_connections", -1),
        ("server.connections_per_address", -5),
    ):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            load_config(None, env={}, overrides={key: value})
