"""Environment overrides: CORTEX_API_URL and the database URL (or the file naming it)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import replace

from bridge.config.settings import DATABASE_FILE_VARIABLE, DATABASE_VARIABLE, Config
from bridge.config.values import as_database_url, http_url
from bridge.errors import ConfigError
from bridge.secrets import variable_or_file


def apply_environ(config: Config, environ: Mapping[str, str]) -> Config:
    """CORTEX_API_URL and BRIDGE_DATABASE_URL (or BRIDGE_DATABASE_URL_FILE) win over the file."""
    url = environ.get("CORTEX_API_URL", "").strip()
    if url:
        config = replace(config, cortex=replace(config.cortex, url=http_url(url, "CORTEX_API_URL")))
    name, database = database_url_from(environ)
    if database:
        config = replace(config, database=as_database_url(database, name))
    return config


def database_url_from(environ: Mapping[str, str]) -> tuple[str, str]:
    """(the variable the database URL came from, the URL); the URL is "" when none is set.

    A PostgreSQL URL carries a password, so it may come from a file (a Docker or Kubernetes
    secret) named by BRIDGE_DATABASE_URL_FILE, by the rule of every ``*_FILE``
    (bridge.secrets.variable_or_file: both set is an error).
    """
    name, value = variable_or_file(environ, DATABASE_VARIABLE)
    if name == DATABASE_FILE_VARIABLE and not value:
        # Falling back to the default SQLite file would split the fleet across two databases.
        path = environ[DATABASE_FILE_VARIABLE].strip()
        raise ConfigError(DATABASE_FILE_VARIABLE, f"{path!r} is empty")
    return name, value


# A secret or a URL is a line; a file named by mistake (a log, /dev/zero) is not read whole.
MAX_FILE_VARIABLE_BYTES = 64 * 1024


def read_regular(path: str, most: int) -> bytes:
    """The first ``most`` + 1 bytes of the regular file at ``path`` (so that one longer is
    known); OSError, its ``strerror`` the reason, for what cannot be read or is no regular
    file: a directory, a device (/dev/zero is endless), a pipe (opening one waits for a
    writer, for good: so it is asked before it is opened)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise OSError(0, "is a directory" if stat.S_ISDIR(mode) else "not a regular file")
    with open(path, "rb") as file:
        return file.read(most + 1)


def read_file_variable(variable: str, path: str) -> str:
    """The text of the file ``variable`` (a ``*_FILE``) names, stripped.

    Every failure is one ConfigError naming the variable and the path, never the content: the
    file cannot be opened or read, is not UTF-8 text, or is longer than any secret.
    """
    try:
        data = read_regular(path, MAX_FILE_VARIABLE_BYTES)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(variable, f"cannot read {path!r} ({reason})") from None
    if len(data) > MAX_FILE_VARIABLE_BYTES:
        raise ConfigError(variable, f"{path!r} is longer than {MAX_FILE_VARIABLE_BYTES} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(variable, f"{path!r} is not utf-8 text") from None
