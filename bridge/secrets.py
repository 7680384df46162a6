"""Secrets from the environment: ``NAME``, or the file named by ``NAME_FILE``.

Every face reads its secrets here (the Action and ``send``, ``serve``, ``worker``, ``sync``,
``check-config``), so the rule for ``*_FILE`` variables is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from bridge.errors import ConfigError, UsageError
from bridge.model import CONTROL, character_problem

# The one registry of the secrets' names: every face, check, log filter and message takes
# them from here.
VARIABLE = {
    "cortex": "CORTEX_API_TOKEN",
    "github-webhook": "GITHUB_WEBHOOK_SECRET",
    "gitlab-webhook": "GITLAB_WEBHOOK_TOKEN",
    "flux-webhook": "FLUX_WEBHOOK_SECRET",
    "argocd-webhook": "ARGOCD_WEBHOOK_TOKEN",
    "admin": "BRIDGE_ADMIN_TOKEN",
    "github-api": "GITHUB_TOKEN",  # sync's and the reconcile's SCM readers
    "gitlab-api": "GITLAB_API_TOKEN",
    "argocd-api": "ARGOCD_AUTH_TOKEN",
}
# The webhook secret each source's receiver checks.
WEBHOOK_SECRETS = {
    source: VARIABLE[f"{source}-webhook"] for source in ("github", "gitlab", "flux", "argocd")
}
# What the server reads, in the order check-config reports them (the webhooks' first).
SERVER_SECRETS = (*WEBHOOK_SECRETS.values(), VARIABLE["cortex"], VARIABLE["admin"])
# Every secret a server process may hold (kept out of logs and errors).
ALL_SECRETS = (
    *SERVER_SECRETS,
    VARIABLE["github-api"],
    VARIABLE["gitlab-api"],
    VARIABLE["argocd-api"],
)


def variable_or_file(environ: Mapping[str, str], name: str) -> tuple[str, str]:
    """(where the value came from, the value): ``NAME``, or the file ``NAME_FILE`` names (a
    Docker or Kubernetes secret), surrounding whitespace and the final line break dropped; ""
    when neither is set. An empty variable counts as unset.

    Both set is a ConfigError naming ``NAME_FILE``, as in the official postgres image
    (POSTGRES_PASSWORD_FILE): which one was meant cannot be known, and a guess could send a
    token, or open a database, that was not meant. The one rule for every ``*_FILE``.
    """
    value = environ.get(name, "").strip()
    path = environ.get(f"{name}_FILE", "").strip()
    if not path:
        return name, value
    if value:
        raise ConfigError(
            f"{name}_FILE", f"{name} is set too: set only one (an empty one counts as unset)"
        )
    # Imported here: the config package loads PyYAML, which the Action's start need not pay.
    from bridge.config.environ import read_file_variable

    return f"{name}_FILE", read_file_variable(f"{name}_FILE", path)


def secret_from(environ: Mapping[str, str], name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (:func:`variable_or_file`):
    one line of text; a control character in it (a second line, a NUL) is a UsageError
    naming the variable, never the value (a token goes into an HTTP header)."""
    source, value = variable_or_file(environ, name)
    problem = secret_problem(value, token=name not in HMAC_KEYS)
    if problem is not None:
        raise UsageError(f"{source}: {problem}")
    return value


def secret_problem(value: str, *, token: bool = True) -> str | None:
    """What keeps ``value`` from being a secret, never the value: a control character; and,
    for a ``token`` (not an HMAC key), a character outside ASCII. The one rule, for a
    variable, its file and the Action's input."""
    character = character_problem(value)
    if character is not None:  # a byte no UTF-8 (an environment's) is named as such
        return NOT_ONE_LINE if character == CONTROL else f"the secret holds {character}"
    if token and not value.isascii():
        return NOT_ASCII
    return None


# The secrets that are HMAC keys (any text: the sender signs with its UTF-8 bytes); every
# other is a token that goes into, or is compared with, an HTTP header as it is.
HMAC_KEYS = frozenset({VARIABLE["github-webhook"], VARIABLE["flux-webhook"]})
NOT_ASCII = "the token holds a character outside ASCII; an HTTP header carries it as it is"


# A token goes into an HTTP header, where the HTTP library would refuse a second line in a
# traceback: a secret is one line of text, and a control character in it (a line break, a NUL:
# the model's one rule, bridge.model.character_problem) is refused up front, naming where it came
# from, never the value.
NOT_ONE_LINE = "the secret holds a control character (a line break?); it must be one line of text"


# The query keys of a URL that hold a password (libpq's: ``password``, and ``sslpassword``
# for the client key's), wherever the database URL is shown or kept.
PASSWORD_KEYS = ("password", "sslpassword")


def url_passwords(url: str) -> tuple[str, ...]:
    """The passwords a URL holds (the database URL's), decoded: in its user info, and in a
    ``password=`` or ``sslpassword=`` query (as libpq and SQLAlchemy take them)."""
    if "://" not in url:
        return ()
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a port that is not a number: no password to read then either
        password = None
    query = url.partition("?")[2].partition("#")[0]
    given = [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in PASSWORD_KEYS]
    return tuple(p for p in (unquote(password) if password else "", *given) if p)


def held(
    environ: Mapping[str, str],
    *,
    database: str = "",
    token_envs: Iterable[str] = (),
    lenient: bool = False,
    read: Mapping[str, str] | None = None,
) -> list[str]:
    """Every secret a process holds, to be masked wherever it shows or keeps a text: the
    registry's (ALL_SECRETS), the ``database`` URL's password, and the http sources' tokens
    (their ``token_env``). ``lenient``: one that cannot be read is left out, not an error (a
    command that only masks with them, ``deliveries``, needs none of them to work). ``read``:
    those already read, by name (not read again)."""
    known = read or {}
    found = list(known.values())
    for name in (*ALL_SECRETS, *token_envs):
        if name in known:
            continue
        try:
            found.append(secret_from(environ, name))
        except UsageError:
            if not lenient:
                raise
    return [secret for secret in (*found, *url_passwords(database)) if secret]
