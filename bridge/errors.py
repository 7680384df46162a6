"""The one error tree of the bridge: every error carries the data that explains it."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class UsageError(BridgeError):
    """Bad input from the user: a flag, an input, an environment variable."""


class ConfigError(UsageError):
    """A configuration file or value is invalid; ``key`` names where."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.reason = message


class InputError(UsageError):
    """A bad value for one input of ``send`` / the Action; ``name`` is the input's name.

    Each face spells the name its own way (``--timestamp`` for ``send``, the ``timestamp``
    input for the Action), so the message is built where it is shown.
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class SignatureError(BridgeError):
    """A webhook's signature or token is missing or wrong."""


class MalformedEvent(BridgeError):
    """A webhook body that names an event but lacks what that event must carry."""


class InvalidDeploy(MalformedEvent):
    """A deploy the bridge cannot record as it is: ``field`` names the value at fault
    (``environment``, ``title``, ``entity``, ...), each face spelling it its own way."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedEvent(BridgeError):
    """An event the bridge does not record; ``reason`` says why (it is answered "ignored")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CortexError(BridgeError):
    """Cortex answered with an error, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came), ``body`` Cortex's own text,
    ``retry_after`` the seconds Cortex asked us to wait, when it said.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after


class CortexRetryable(CortexError):
    """429, 5xx, a timeout or a dropped connection: worth trying again later."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        body: str = "",
        retry_after: float | None = None,
        unclear: bool = False,
    ) -> None:
        super().__init__(message, status=status, body=body, retry_after=retry_after)
        # True when the request may have reached Cortex (the answer was lost): before
        # trying again, look for the record it may already have made.
        self.unclear = unclear


class CortexRejected(CortexError):
    """Cortex refused the request (4xx other than 429): retrying would not help."""


class CortexTooMany(CortexRejected):
    """A listing or search holds more deploys than may be read at once: judged on part of
    them, a record past the bound would look missing (bridge.cortex.client.MAX_PAGES)."""


class CortexUnauthorized(CortexRejected):
    """Cortex refused the API token (401, 403): the operator must fix it; what was refused
    is kept and tried again then (bridge.cortex.answers decides this, once)."""
