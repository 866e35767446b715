"""PostgreSQL URLs as hosting providers hand them out, turned into asyncpg's connect arguments.

asyncpg reads a libpq-style URL itself, but not all of it: a query parameter it does not know is
sent to the server as a run-time setting, so ``?connect_timeout=10`` fails with "unrecognized
configuration parameter". Every way pgqueue connects (the pool, the worker's dedicated connections,
listeners, the migrations' SQLAlchemy engine) goes through ``parse`` below, which decides for each
libpq parameter:

- asyncpg's own (host, port, dbname, user, password, passfile, service, sslmode, sslcert, sslkey,
  sslrootcert, sslcrl, sslpassword, sslnegotiation, ssl_min/max_protocol_version,
  target_session_attrs, krbsrvname, gsslib) stay in the URL, and asyncpg applies them as libpq does;
- ``connect_timeout`` becomes asyncpg's ``timeout``;
- ``application_name``, ``client_encoding``, any other server setting (``search_path=app``,
  ``statement_timeout=5s``) and the ``-c name=value`` switches of ``options`` become server
  settings, which win over pgqueue's defaults (a parameter wins over the same name in ``options``,
  as on the server); ``fallback_application_name`` names the connection when the URL has no
  ``application_name``;
- libpq features asyncpg lacks are accepted only with values whose meaning asyncpg's behaviour
  already fulfils (``channel_binding=prefer``: asyncpg authenticates without channel binding, as
  libpq does when the server offers none). Any other value raises ``ConfigurationError`` rather than
  connecting with less protection than the URL asked for (``channel_binding=require``,
  ``gssencmode=require``).

The server itself judges names that are no libpq parameter (a misspelt setting fails there).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from .errors import ConfigurationError

# What asyncpg's DSN parser (0.32: connect_utils._parse_connect_dsn_and_args) takes itself.
ASYNCPG_PARAMETERS = frozenset({
    "host", "port", "dbname", "database", "user", "password", "passfile", "service",
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs",
    "krbsrvname", "gsslib",
})

# libpq parameters asyncpg has nothing for: the values at which asyncpg already behaves as libpq
# would (accepted and dropped), and what to do about any other value.
UNSUPPORTED: dict[str, tuple[frozenset[str], str]] = {
    "channel_binding": (frozenset({"disable", "prefer"}),
                        "it authenticates without channel binding; use channel_binding=prefer"),
    "gssencmode": (frozenset({"disable", "prefer"}),
                   "it has no GSSAPI encryption; use sslmode=require for an encrypted link"),
    "gssdelegation": (frozenset({"0"}), "it never delegates GSSAPI credentials"),
    "require_auth": (frozenset(), "it cannot restrict the authentication method"),
    "requirepeer": (frozenset(), "it cannot check the server's user on a Unix socket"),
    "requiressl": (frozenset({"0"}), "use sslmode=require"),
    "sslcertmode": (frozenset({"allow"}), "it sends a client certificate whenever one is set"),
    "sslcrldir": (frozenset(), "it reads one revocation list file; use sslcrl"),
    # Both values mean nothing today: OpenSSL 1.1 and later never compress.
    "sslcompression": (frozenset({"0", "1"}), "sslcompression takes 0 or 1"),
    "sslsni": (frozenset({"1"}), "it always sends the host name (SNI)"),
    "hostaddr": (frozenset(), "put the address in the URL's host instead"),
    "load_balance_hosts": (frozenset({"disable"}), "it tries the hosts in the order given"),
    "keepalives": (frozenset({"0"}), "it cannot turn on TCP keepalives"),
    "keepalives_idle": (frozenset(), "it cannot tune TCP keepalives"),
    "keepalives_interval": (frozenset(), "it cannot tune TCP keepalives"),
    "keepalives_count": (frozenset(), "it cannot tune TCP keepalives"),
    "tcp_user_timeout": (frozenset(), "it cannot set TCP_USER_TIMEOUT"),
    "replication": (frozenset(), "pgqueue needs an ordinary connection, not a replication one"),
}

_OPTION_WORD = re.compile(r"(?:\\.|[^\s\\])+")
_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class ConnectArgs:
    """What asyncpg.connect needs: the URL minus what pgqueue took out of it."""

    dsn: str
    timeout: float | None = None
    server_settings: dict[str, str] = field(default_factory=dict)


def check_dsn(dsn: str | None) -> str:
    """Return the DSN if it is a PostgreSQL URL asyncpg can honour, else say what to change."""
    if not dsn:
        raise ConfigurationError(
            "no database configured: set PGQUEUE_DSN=postgresql://user@host:5432/dbname "
            "or pass PgQueue(dsn=...)"
        )
    scheme = urlsplit(dsn).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"PGQUEUE_DSN must be a postgresql:// URL, got one starting with {scheme or dsn[:12]!r}"
            " (SQLAlchemy-style 'postgresql+driver://' URLs are not accepted here)"
        )
    parse(dsn)
    return dsn


def describe(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (never the password); with several hosts
    (``db1:5432,db2:5432``), all of them in order."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    netloc = parts.netloc.rpartition("@")[2]
    if "," in netloc:
        port = query.get("port", "5432")
        hosts = [h if re.search(r":\d+$", h) else f"{h}:{port}" for h in netloc.split(",")]
        return f"{','.join(hosts)}{parts.path or ''}"
    host = parts.hostname or query.get("host") or "localhost"
    try:
        port = parts.port or query.get("port") or 5432
    except ValueError:
        port = "?"
    return f"{host}:{port}{parts.path or ''}"


def parse(dsn: str) -> ConnectArgs:
    """Split a ``postgresql://`` URL into asyncpg's URL, connect timeout and server settings."""
    base, _, rest = dsn.partition("?")
    query, _, _fragment = rest.partition("#")
    try:
        params = dict(parse_qsl(query, strict_parsing=bool(query)))
    except ValueError as exc:
        raise ConfigurationError(
            f"the DSN for {describe(dsn)} has a malformed query string: {exc}"
        ) from None
    fallback_name = params.pop("fallback_application_name", None)
    settings = _options(params.pop("options", ""))
    kept: dict[str, str] = {}
    timeout = None
    for name, value in params.items():
        if name in ASYNCPG_PARAMETERS:
            kept[name] = value
        elif name == "connect_timeout":
            timeout = _timeout(value)
        elif name in UNSUPPORTED:
            _check_supported(name, value)
        else:
            settings[name] = value
    if fallback_name and "application_name" not in settings:
        settings["application_name"] = fallback_name
    return ConnectArgs(base + ("?" + urlencode(kept) if kept else ""), timeout, settings)


def _check_supported(name: str, value: str) -> None:
    accepted, advice = UNSUPPORTED[name]
    if value not in accepted:
        raise ConfigurationError(
            f"the DSN asks for {name}={value}, which pgqueue's driver (asyncpg) cannot honour: "
            f"{advice}, or remove {name} from the DSN"
        )


def _timeout(value: str) -> float:
    """libpq's connect_timeout in seconds; its "0 means wait forever" has no asyncpg equivalent."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigurationError(
            f"the DSN's connect_timeout={value} is not a positive number of seconds: "
            "give one, e.g. connect_timeout=10"
        )
    return seconds


def _options(value: str) -> dict[str, str]:
    """The ``-c name=value`` / ``--name=value`` switches of libpq's ``options`` as settings, split
    as the server splits them (whitespace separates, a backslash escapes). Anything else stays in
    an ``options`` setting that asyncpg hands to the server untouched, as libpq does."""
    words = [re.sub(r"\\(.)", r"\1", word) for word in _OPTION_WORD.findall(value)]
    settings: dict[str, str] = {}
    rest: list[str] = []
    while words:
        word = words.pop(0)
        if word == "-c" and words:
            word = "-c" + words.pop(0)
        assignment = word[2:] if word.startswith(("-c", "--")) else ""
        name, equals, setting = assignment.partition("=")
        if name and equals:
            settings[name.replace("-", "_")] = setting
        else:
            rest.append(word)
    if rest:
        settings["options"] = " ".join(re.sub(r"([\s\\])", r"\\\1", word) for word in rest)
    return settings
