"""The inputs of ``send`` and the Action, and their parsing. Pure: no I/O.

Parsing raises InputError naming the bad input; each face spells the name its own way.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import ModuleType
from typing import Any

from bridge.errors import InputError, UsageError
from bridge.model import HEX_SHA, MAX_NAME, DeployRef, DeployType, character_problem
from bridge.times import parse_timestamp
from bridge.urls import CORTEX_URL, base_url_problem

TYPES = ("auto", *(t.value for t in DeployType))


@dataclass(frozen=True)
class Inputs:
    """The user's inputs as given (flags or INPUT_*); empty strings mean "from context"."""

    cortex_api_token: str = ""
    cortex_api_url: str = ""
    entity_tag: str = ""
    environment: str = ""
    type: str = "auto"
    title: str = ""
    sha: str = ""
    url: str = ""
    deployer_name: str = ""
    deployer_email: str = ""
    timestamp: str = ""
    custom_data: str = ""
    deploy_id: str = ""
    fail_on_error: bool = True
    dry_run: bool = False

    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed."""
        return (self.cortex_api_token,) if self.cortex_api_token else ()


@dataclass(frozen=True)
class Notice:
    """Something the user should fix, about one input (each face spells ``name`` its way)."""

    name: str
    text: str


@dataclass(frozen=True)
class Input:
    """One input: the Action's ``name`` (``INPUT_<NAME>``) and ``send``'s ``--name`` flag.

    ``default`` is what action.yml states (a test holds the two together); an empty value
    takes it, except where ``fallback`` names a variable read first (by the step).
    """

    name: str
    help: str
    default: str = ""
    required: bool = False
    boolean: bool = False
    many: bool = False  # send: a repeatable flag, its values joined as one per line
    action: bool = True  # the Action has this input
    flag: bool = True  # send has this flag
    fallback: str | None = None  # the environment variable that fills it when empty
    metavar: str | None = None

    @property
    def field(self) -> str:
        """The attribute of Inputs (and of send's parsed flags)."""
        return self.name.replace("-", "_")


# PRODUCT.md's variables for the two Cortex inputs, read when the input is empty.
TOKEN_VARIABLE, URL_VARIABLE = "CORTEX_API_TOKEN", "CORTEX_API_URL"

INPUTS: tuple[Input, ...] = (
    Input(
        "cortex-api-token",
        "Cortex API token",
        required=True,
        flag=False,  # a flag would show the token in the process list and the shell's history
        fallback=TOKEN_VARIABLE,
    ),
    Input(
        "cortex-api-url",
        f"Cortex API base URL (default: ${URL_VARIABLE} or {CORTEX_URL})",
        fallback=URL_VARIABLE,
    ),
    Input(
        "entity-tag",
        "Cortex entity tag; repeat or comma-separate for several "
        "(default: info.x-cortex-tag of cortex.yaml, else the repository's name)",
        many=True,
        metavar="TAG",
    ),
    Input("environment", "deploy environment (default: from the CI job)"),
    Input(
        "type",
        "DEPLOY, SCALE, ROLLBACK, RESTART, or auto: ROLLBACK when the sha was "
        "deployed to this environment before and is not the latest (default: auto)",
        default="auto",
        metavar="TYPE",
    ),
    Input("title", "title (default: the commit's first line)"),
    Input("sha", "commit sha (default: from the CI job)"),
    Input("url", "link to the deploy (default: the CI job or run page)"),
    Input("deployer-name", "who deployed (default: from the CI job)"),
    Input("deployer-email", "deployer's email (default: from the CI job)"),
    Input(
        "timestamp",
        "when it finished: RFC 3339, or Unix seconds (default: the CI's, else now, UTC)",
    ),
    Input(
        "custom-data",
        "a mapping merged into the deploy's customData (not its keys status, startedAt, bridge)",
        metavar="JSON_OR_YAML",
    ),
    Input(
        "deploy-id",
        "name this deploy where the CI has no build id (or to override it), so that "
        "running the same command again finds the record instead of making a second one",
        action=False,  # the Action's run (or deployment) names the deploy
        metavar="ID",
    ),
    Input(
        "fail-on-error",
        "exit 1 when the deploy cannot be recorded (default: on)",
        default="true",
        boolean=True,
    ),
    Input(
        "dry-run",
        "print what would be sent; send nothing (reads history when a token is set)",
        default="false",
        boolean=True,
    ),
)
INPUT_BY_NAME = {spec.name: spec for spec in INPUTS}


def plain(name: str, value: str) -> str:
    """``value`` when it has no control character nor byte that is no text (it becomes part
    of a key or a URL): the model's one test of it, as every face applies it."""
    problem = character_problem(value)
    if problem is not None:
        raise InputError(name, f"{value!r} contains {problem}")
    return value


def parse_bool(name: str, value: str, *, default: bool) -> bool:
    """An action-style boolean input ("true"/"false", as YAML 1.2 core schema spells it)."""
    text = value.strip().lower()
    if not text:
        return default
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise InputError(name, f"expected true or false, got {value!r}")


def parse_type(value: str) -> DeployType | None:
    """DEPLOY, SCALE, ROLLBACK, RESTART, or auto (None: rollback detection decides)."""
    text = value.strip() or "auto"
    if text.lower() == "auto":
        return None
    try:
        return DeployType(text.upper())
    except ValueError:
        raise InputError("type", f"{value!r} is not one of {', '.join(TYPES)}") from None


def parse_entities(value: str) -> tuple[str, ...]:
    """One or more entity tags, comma- or newline-separated, in order, without repeats."""
    tags = (part.strip() for part in re.split(r"[,\n]", value))
    return tuple(dict.fromkeys(plain("entity-tag", tag) for tag in tags if tag))


def import_yaml(what: str) -> ModuleType:
    """PyYAML, imported on first need; one line naming the fix where it is missing.

    It is the base install's one dependency, and a release's Action tree carries it
    (``_vendor/``); an Action run from a checkout (``@main``, ``uses: ./``) on a runner whose
    Python lacks it reads JSON only.
    """
    try:
        import yaml
    except ImportError:
        raise UsageError(
            f"{what} is YAML, and PyYAML is not installed here: pip install PyYAML (the "
            "Action's release tags carry it), or give JSON"
        ) from None
    return yaml


def parse_custom_data(value: str) -> dict[str, Any]:
    """A JSON or YAML mapping (YAML only loaded when the text is not JSON)."""
    text = value.strip()
    if not text:
        return {}
    try:
        try:
            data = json.loads(text, parse_constant=_not_a_number)
        except ValueError:
            yaml = import_yaml("custom-data")

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" (line {mark.line + 1})" if mark is not None else ""
                raise InputError("custom-data", f"neither JSON nor YAML{where}") from None
        if not isinstance(data, dict):
            raise InputError("custom-data", f"expected a mapping, got {type(data).__name__}")
        plain = _jsonable(data)
        assert isinstance(plain, dict)
        return plain
    except RecursionError:
        raise InputError("custom-data", "nested too deeply") from None


def _not_a_number(word: str) -> Any:
    raise InputError("custom-data", f"{word} is not a number JSON can carry")


def _jsonable(value: Any) -> Any:
    """``value`` as JSON has it: YAML's dates and times as their ISO text, and a key that is
    not text (``80:``, ``true:``, ``null:``, a date) as the text JSON makes of it (``"80"``,
    ``"true"``, ``"null"``); two keys that would so become one (``true:`` and ``"true":``) are
    refused rather than one value lost, as are NaN, the infinities and what JSON has no type
    for (``!!binary``, ``!!set``)."""
    if isinstance(value, dict):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            text = _key_text(key)
            if text in plain:
                raise InputError("custom-data", f"two keys are both {text!r} in JSON: keep one")
            plain[text] = _jsonable(item)
        return plain
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError("custom-data", "NaN or an infinity is not a number JSON can carry")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise InputError("custom-data", f"holds a {type(value).__name__}, which JSON has no type for")


def _key_text(key: Any) -> str:
    """A mapping key as JSON writes it: text as it is, ``true``/``false``/``null``, a number's
    JSON text, a date's ISO text; InputError for a key JSON has none for."""
    if isinstance(key, str):
        return key
    if isinstance(key, (datetime, date)):
        return key.isoformat()
    if key is None or isinstance(key, (bool, int, float)):
        if isinstance(key, float) and not math.isfinite(key):
            raise InputError("custom-data", "NaN or an infinity is no key JSON can carry")
        return json.dumps(key)
    raise InputError("custom-data", f"a key that is a {type(key).__name__}: JSON has no such key")


def parse_sha(value: str) -> str:
    """A hex commit sha (7 to 64 digits), lower-cased."""
    text = value.strip()
    if not HEX_SHA.fullmatch(text):
        digits = "7 to 64 hex digits (0-9, a-f)"
        raise InputError("sha", f"{value[:80]!r} is not a commit sha: {digits}")
    return text.lower()


def parse_deploy_id(value: str) -> DeployRef | None:
    """``--deploy-id``: the user's own name for this deploy, or None when not given."""
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_NAME:
        raise InputError("deploy-id", f"longer than {MAX_NAME} characters")
    return DeployRef("id", plain("deploy-id", text))


def parse_url(name: str, value: str) -> str:
    """An absolute http(s) URL."""
    text = value.strip()
    if not re.match(r"^https?://[^\s/]+", text):
        raise InputError(name, f"{value!r} is not an http(s) URL")
    return text


def parse_api_url(name: str, value: str) -> str:
    """An http(s) base URL the Cortex token is sent to, by the rule the config checks
    CORTEX_API_URL by (:func:`bridge.urls.base_url_problem`)."""
    text = value.strip()
    problem = base_url_problem(text)
    if problem:
        raise InputError(name, problem)
    return text.rstrip("/")


def parse_when(value: str, default: datetime) -> datetime:
    """The deploy's time: the given RFC 3339 timestamp, or the default (the CI's, or now)."""
    if not value.strip():
        return default
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError("timestamp", str(exc)) from None


def inputs_from_action(environ: Mapping[str, str]) -> Inputs:
    """The Action's inputs: INPUT_<NAME> underscored (action.yml's composite step sets them so)
    or with hyphens kept (as GitHub passes them to a Docker step, `uses: docker://...`)."""

    def given(name: str) -> str:
        upper = name.upper()
        for key in (f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"):
            if environ.get(key, "").strip():
                return environ[key]
        return ""

    return make_inputs({spec.name: given(spec.name) for spec in INPUTS if spec.action})


def inputs_from_flags(args: argparse.Namespace) -> Inputs:
    """Inputs of ``send``: its flags, as :func:`add_flags` declared them."""
    values: dict[str, str | bool] = {}
    for spec in INPUTS:
        if spec.flag:
            value = getattr(args, spec.field)
            values[spec.name] = "\n".join(value) if spec.many else value
    return make_inputs(values)


def make_inputs(given: Mapping[str, str | bool]) -> Inputs:
    """Inputs from the values given by name; an empty one takes the table's default."""
    values: dict[str, Any] = {}
    for spec in INPUTS:
        value = given.get(spec.name, "")
        if spec.boolean:
            default = spec.default == "true"
            values[spec.field] = (
                value if isinstance(value, bool) else parse_bool(spec.name, value, default=default)
            )
        else:
            text = str(value).strip()
            # An input with a fallback variable stays empty: the variable comes before the
            # default, and the step reads it (secrets only where it reads secrets).
            values[spec.field] = text or ("" if spec.fallback else spec.default)
    return Inputs(**values)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``send``'s flags: one per input of the table that has a flag."""
    for spec in INPUTS:
        if not spec.flag:
            continue
        flag = f"--{spec.name}"
        if spec.boolean and spec.default == "true":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=True, help=spec.help
            )
        elif spec.boolean:
            parser.add_argument(flag, action="store_true", help=spec.help)
        elif spec.many:
            parser.add_argument(
                flag, action="append", default=[], metavar=spec.metavar, help=spec.help
            )
        else:
            parser.add_argument(flag, default="", metavar=spec.metavar, help=spec.help)


def spell_flag(name: str) -> str:
    """How ``send`` names an input: its flag, or the variable it reads instead of one."""
    spec = INPUT_BY_NAME.get(name)
    if spec is not None and not spec.flag and spec.fallback:
        return spec.fallback
    return f"--{name}"


def action_takes(name: str) -> bool:
    """Whether the Action has the input ``name``."""
    spec = INPUT_BY_NAME.get(name)
    return spec is not None and spec.action
