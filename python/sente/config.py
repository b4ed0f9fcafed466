"""Settings for ``sente serve``: command-line flags, ``SENTE_*`` environment variables, a TOML file, defaults.

Precedence, highest first: a flag given on the command line, an environment variable ``SENTE_<NAME>``
(``SENTE_PORT=9000``, ``SENTE_WORKERS=4``, ``SENTE_LP_TIMEOUT_MS=25000``), a key of the TOML file named by
``--config`` (or ``SENTE_CONFIG``), the default. :func:`load_settings` merges them into one typed, frozen
:class:`Settings`; every value is checked once, here, and a bad one raises :class:`ConfigError` naming where it
came from (``SENTE_PORT: expected an integer, got 'x'``; ``sente.toml: unknown key 'prot' (did you mean
'port'?)``). Unknown keys are errors in the file and in the environment (any ``SENTE_*`` variable we do not
know, but ``SENTE_CONFIG`` and ``SENTE_SESSION_SECRET``), so a typo never silently leaves a default in place.

The file is flat, with the same names as the settings (``-`` and ``_`` both accepted)::

    host = "0.0.0.0"
    port = 8090
    workers = "auto"          # the default: one per CPU; a number; 0: one process, no supervisor
    packer = "transit"
    json_logs = true
    shutdown_timeout = 10.0
    lp_timeout_ms = 25000     # any numeric ServerConfig option; "none" turns off an optional one

Names: ``host``, ``port``, ``workers``, ``packer``, ``log_level``, ``json_logs``, ``shutdown_timeout``,
``redis_url`` (``SENTE_REDIS_URL``: join other nodes through Redis), ``redis_ttl``, ``session_secret_file``,
``secure_cookies``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs`` (https and wss on the port) and
every numeric :class:`~sente.protocol.config.ServerConfig` option (``NUMERIC_OPTIONS``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .packers import PACKER_NAMES
from .protocol.config import ServerConfig
from .sessions import read_secret

MAX_WORKERS = 32
"""As many workers as the shared-memory segment has holder bits (``csente.shm.MAX_WORKERS``)."""
PACKERS = PACKER_NAMES
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENV_PREFIX = "SENTE_"
CONFIG_ENV = "SENTE_CONFIG"
NOT_SETTINGS = frozenset({CONFIG_ENV, "SENTE_SESSION_SECRET"})
"""``SENTE_*`` variables that are read elsewhere (the config file's name; :mod:`sente.sessions`' signing key)."""

NUMERIC_OPTIONS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ServerConfig) if f.type in ("int", "int | None")
)
"""ServerConfig's numeric options, by name: each is a setting (and a ``--flag`` of ``sente serve``)."""
OPTIONAL_OPTIONS = frozenset(f.name for f in dataclasses.fields(ServerConfig) if f.type == "int | None")
"""The numeric options that ``none`` turns off (e.g. ``ws_kalive_ms``)."""


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message says which and where it came from."""


@dataclass(frozen=True)
class Settings:
    """Everything ``sente serve`` needs to run an app, merged from all sources."""

    host: str = "127.0.0.1"
    port: int = 8090
    workers: int = dataclasses.field(default_factory=lambda: default_workers())
    """How many worker processes the supervisor runs (default: one per CPU); 0: the app runs in this one
    process, with no supervisor and no shared memory (for debugging and embedding)."""
    packer: str = "edn"
    log_level: str = "info"
    json_logs: bool = False
    """One JSON object per log line (time, level, logger, message, worker, pid)."""
    shutdown_timeout: float = 10.0
    """Seconds a worker has to drain after SIGTERM; the supervisor kills it after that."""
    redis_url: str | None = None
    """Join the other nodes of a cluster through this Redis (``redis://host:6379/0``); None: this node alone."""
    redis_ttl: float = 5.0
    """Seconds after which a node that stopped heartbeating to Redis leaves presence (its uids close)."""
    session_secret_file: str | None = None
    """The file holding the secret session cookies are signed with, created once when missing (default
    ``$XDG_STATE_HOME/sente/session-secret``); ``SENTE_SESSION_SECRET`` (the secret itself) wins over it."""
    secure_cookies: bool | None = None
    """Mark session cookies ``Secure`` (HTTPS only); None: on when this server serves TLS."""
    ssl_certfile: str | None = None
    """Serve https/wss with this PEM certificate (chain); ``ssl_keyfile`` is its key unless the file holds it."""
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None
    """CA certificates to verify client certificates with."""
    server_options: Mapping[str, int | None] = field(default_factory=dict)
    """The numeric ServerConfig options that were set (only those), passed on to the app factory."""

    @property
    def cookies_secure(self) -> bool:
        """``secure_cookies``, or when unset (auto) whether this server serves TLS (an ``ssl_certfile`` setting)."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.ssl_certfile is not None

    def to_json(self) -> dict[str, Any]:
        """A plain dict (for handing the settings to a worker process); :func:`settings_from_json` reads it."""
        data = dataclasses.asdict(self)
        data["server_options"] = dict(self.server_options)
        return data


def settings_from_json(data: Mapping[str, Any]) -> Settings:
    """The inverse of :meth:`Settings.to_json` (values are checked again)."""
    values = {k: v for k, v in data.items() if k != "server_options"}
    values.update(data.get("server_options", {}))
    return _build({name: (value, "settings") for name, value in values.items()})


def _parse_int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{where}: {n} is out of range {lo}..{hi}")
    return n


def _parse_workers(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return default_workers()
    return _parse_int(value, where, 0, MAX_WORKERS)


def default_workers() -> int:
    """``workers = "auto"``: one worker per CPU, at most :data:`MAX_WORKERS`."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def _parse_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _parse_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}")
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}") from None
    if not 0 < x <= 3600:
        raise ConfigError(f"{where}: {x} is out of range (0, 3600] seconds")
    return x


def _parse_choice(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def parse(value: Any, where: str) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return parse


def _parse_host(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a host name or address, got {value!r}")
    return value.strip()


def _parse_redis_url(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if not isinstance(value, str) or not value.strip().startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{where}: expected a redis://, rediss:// or unix:// URL, got {value!r}")
    return value.strip()


def _parse_secret_file(value: Any, where: str) -> str | None:
    """A path; a file that exists must hold a usable secret (a missing one is created at startup)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a file name, got {value!r}")
    path = os.path.expanduser(value.strip())
    if os.path.exists(path):
        try:
            read_secret(path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
    return path


def _parse_auto_bool(value: Any, where: str) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    return _parse_bool(value, where)


def _parse_file(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if not isinstance(value, str) or not os.path.isfile(value):
        raise ConfigError(f"{where}: no such file: {value!r}")
    return value


def _parse_option(name: str) -> Callable[[Any, str], int | None]:
    def parse(value: Any, where: str) -> int | None:
        if name in OPTIONAL_OPTIONS and (value is None or (isinstance(value, str) and value.lower() == "none")):
            return None
        return _parse_int(value, where, -(2**62), 2**62)

    return parse


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "host": _parse_host,
    "port": lambda v, w: _parse_int(v, w, 0, 65535),
    "workers": _parse_workers,
    "packer": _parse_choice(PACKERS),
    "log_level": _parse_choice(LOG_LEVELS),
    "json_logs": _parse_bool,
    "shutdown_timeout": _parse_float,
    "redis_url": _parse_redis_url,
    "redis_ttl": _parse_float,
    "session_secret_file": _parse_secret_file,
    "secure_cookies": _parse_auto_bool,
    "ssl_certfile": _parse_file,
    "ssl_keyfile": _parse_file,
    "ssl_ca_certs": _parse_file,
    **{name: _parse_option(name) for name in NUMERIC_OPTIONS},
}
NAMES: tuple[str, ...] = tuple(_PARSERS)
"""Every setting's name, as in the TOML file (and, upper-cased after ``SENTE_``, in the environment)."""


def _unknown(name: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(name.lower(), NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {name!r}{hint}")


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var in NOT_SETTINGS:
            continue
        name = var[len(ENV_PREFIX):].lower()
        if name not in _PARSERS:
            close = difflib.get_close_matches(name, NAMES, n=1)
            hint = f" (did you mean {ENV_PREFIX + close[0].upper()}?)" if close else ""
            raise ConfigError(f"environment: unknown variable {var}{hint}")
        found[name] = (value, var)
    return found


def _from_file(path: str) -> dict[str, tuple[Any, str]]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    found: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _PARSERS:
            raise _unknown(key, path)
        found[name] = (value, f"{path}: {key}")
    return found


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge flags (None values mean "not given") > ``env`` (default ``os.environ``) > the TOML file > defaults.

    ``config_path`` is the ``--config`` flag; without it ``SENTE_CONFIG`` may name the file.
    """
    env = os.environ if env is None else env
    path = config_path or env.get(CONFIG_ENV) or None
    merged: dict[str, tuple[Any, str]] = {}
    if path:
        merged.update(_from_file(path))
    merged.update(_from_env(env))
    for name, value in (flags or {}).items():
        if name not in _PARSERS:
            raise _unknown(name, "flags")
        if value is not None:
            merged[name] = (value, "--" + name.replace("_", "-"))
    return _build(merged)


def _build(values: Mapping[str, tuple[Any, str]]) -> Settings:
    parsed: dict[str, Any] = {}
    options: dict[str, int | None] = {}
    for name, (value, where) in values.items():
        parser = _PARSERS.get(name)
        if parser is None:
            raise _unknown(name, where)
        if name in NUMERIC_OPTIONS:
            options[name] = parser(value, where)
        else:
            parsed[name] = parser(value, where)
    try:
        ServerConfig(**cast(dict[str, Any], options))  # its own range checks (lp_timeout_ms...), sources named
    except (ValueError, TypeError) as e:
        sources = ", ".join(values[name][1] for name in options)
        raise ConfigError(f"{sources}: {e}") from None
    if (parsed.get("ssl_keyfile") or parsed.get("ssl_ca_certs")) and not parsed.get("ssl_certfile"):
        raise ConfigError("--ssl-keyfile and --ssl-ca-certs need --ssl-certfile (the server's certificate)")
    return Settings(**parsed, server_options=options)
