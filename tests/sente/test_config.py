"""sente.config: flags > SENTE_* environment > TOML file > defaults, and a clear error for every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sente.cli import main
from sente.config import MAX_WORKERS, ConfigError, Settings, default_workers, load_settings, settings_from_json


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sente.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_any_source() -> None:
    s = load_settings({}, {})
    assert s == Settings()
    assert (s.host, s.port, s.workers, s.packer, s.json_logs, s.shutdown_timeout) == (
        "127.0.0.1", 8090, default_workers(), "edn", False, 10.0)
    assert s.server_options == {}


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    path = toml(tmp_path, 'port = 1111\nhost = "0.0.0.0"\nlp_timeout_ms = 11000\npacker = "transit"\nworkers = 3\n')
    env = {"SENTE_PORT": "2222", "SENTE_LP_TIMEOUT_MS": "22000", "SENTE_WORKERS": "2"}
    flags = {"port": "3333", "lp_timeout_ms": None, "workers": None}
    s = load_settings(flags, env, path)
    assert s.port == 3333  # flag
    assert s.server_options == {"lp_timeout_ms": 22000}  # env over file (the flag was not given)
    assert s.workers == 2  # env
    assert (s.host, s.packer) == ("0.0.0.0", "transit")  # file
    assert s.shutdown_timeout == 10.0  # default
    assert load_settings({}, {}, path).port == 1111


def test_sente_config_names_the_file_and_the_flag_wins(tmp_path: Path) -> None:
    a = toml(tmp_path, "port = 1111\n")
    b = tmp_path / "b.toml"
    b.write_text("port = 2222\n")
    assert load_settings({}, {"SENTE_CONFIG": a}).port == 1111
    assert load_settings({}, {"SENTE_CONFIG": a}, str(b)).port == 2222


def test_value_parsing_by_type(tmp_path: Path) -> None:
    env = {"SENTE_JSON_LOGS": "true", "SENTE_SHUTDOWN_TIMEOUT": "2.5", "SENTE_WS_KALIVE_MS": "none",
           "SENTE_PACKER": "Transit", "SENTE_WORKERS": "auto"}
    s = load_settings({}, env)
    assert s.json_logs is True and s.shutdown_timeout == 2.5 and s.packer == "transit"
    assert s.server_options == {"ws_kalive_ms": None}
    assert s.workers == max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    assert load_settings({}, {"SENTE_JSON_LOGS": "0"}).json_logs is False
    assert load_settings({}, {"SENTE_SESSION_SECRET": "k"}) == Settings()  # read by sente.sessions, not a setting
    s = load_settings({}, {}, toml(tmp_path, "json-logs = true\nsend-buf-ms-ws = 5\n"))  # '-' as in the flags
    assert s.json_logs is True and s.server_options == {"send_buf_ms_ws": 5}


def test_zero_workers_means_one_process_without_a_supervisor() -> None:
    assert load_settings({"workers": "0"}, {}).workers == 0


def test_settings_round_trip_through_json_for_the_workers() -> None:
    s = load_settings({"port": "0", "workers": "2", "lp_timeout_ms": "15000", "json_logs": True}, {})
    assert settings_from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SENTE_PORT": "http"}, "SENTE_PORT: expected an integer, got 'http'"),
        ({"SENTE_PORT": "70000"}, "SENTE_PORT: 70000 is out of range 0..65535"),
        ({"SENTE_WORKERS": "33"}, "SENTE_WORKERS: 33 is out of range 0..32"),
        ({"SENTE_JSON_LOGS": "maybe"}, "SENTE_JSON_LOGS: expected true or false"),
        ({"SENTE_PACKER": "json"}, "SENTE_PACKER: expected one of edn, transit"),
        ({"SENTE_SHUTDOWN_TIMEOUT": "-1"}, "SENTE_SHUTDOWN_TIMEOUT: -1.0 is out of range"),
        ({"SENTE_LP_TIMEOUT_MS": "none"}, "SENTE_LP_TIMEOUT_MS: expected an integer"),  # not an optional one
        ({"SENTE_LP_TIMEOUT_MS": "90000"}, "SENTE_LP_TIMEOUT_MS: lp_timeout_ms must be between"),  # ServerConfig's
        ({"SENTE_PROT": "1"}, "unknown variable SENTE_PROT (did you mean SENTE_PORT?)"),
    ],
)
def test_bad_environment_values_name_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({}, env)
    assert says in str(e.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("prot = 1\n", "unknown setting 'prot' (did you mean 'port'?)"),
        ('port = "x"\n', "port: expected an integer, got 'x'"),
        ("port = true\n", "port: expected an integer, got True"),
        ("json_logs = 1\n", "json_logs: expected true or false, got 1"),
        ("[server]\nport = 1\n", "unknown setting 'server'"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_bad_file_contents_name_the_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings({}, {}, path)
    assert path in str(e.value) and says in str(e.value)


def test_a_missing_file_and_a_bad_flag_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings({}, {}, str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="--port: expected an integer"):
        load_settings({"port": "eighty"}, {})


def test_sente_serve_reports_a_bad_setting_in_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTE_WROKERS", "2")
    assert main(["serve", "sente.testapp:app"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "sente: environment: unknown variable SENTE_WROKERS (did you mean SENTE_WORKERS?)"
    monkeypatch.delenv("SENTE_WROKERS")
    assert main(["serve", "sente.testapp:app", "--lp-timeout-ms", "0"]) == 2
    assert "--lp-timeout-ms: lp_timeout_ms must be between" in capsys.readouterr().err


def test_session_cookies_are_secure_under_tls_unless_told(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("(a certificate)")
    assert not Settings().cookies_secure
    assert Settings(ssl_certfile=str(cert)).cookies_secure
    assert not Settings(ssl_certfile=str(cert), secure_cookies=False).cookies_secure
    assert Settings(secure_cookies=True).cookies_secure
