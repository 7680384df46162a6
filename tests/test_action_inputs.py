"""The one table of inputs: action.yml, send's flags, INPUT_* reads and error names agree."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.action.inputs import (
    INPUTS,
    Inputs,
    add_flags,
    inputs_from_action,
    inputs_from_flags,
)
from bridge.action.output import ActionReporter, Reporter
from bridge.errors import InputError
from bridge.urls import CORTEX_URL

ACTION = Path(__file__).resolve().parents[1] / "action.yml"


@pytest.fixture(scope="module")
def declared() -> dict[str, dict[str, Any]]:
    """action.yml's inputs, parsed."""
    data = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    inputs = data["inputs"]
    assert isinstance(inputs, dict)
    return inputs


def parser() -> argparse.ArgumentParser:
    """A parser with send's flags from the table."""
    made = argparse.ArgumentParser(prog="send")
    add_flags(made)
    return made


def test_the_table_names_exactly_the_action_yml_inputs(declared: dict[str, Any]) -> None:
    assert [spec.name for spec in INPUTS if spec.action] == list(declared)


@pytest.mark.parametrize("spec", [s for s in INPUTS if s.action], ids=lambda s: s.name)
def test_defaults_and_required_agree_with_action_yml(declared: dict[str, Any], spec: Any) -> None:
    entry = declared[spec.name]
    assert str(entry.get("default", "")) == spec.default
    assert bool(entry.get("required", False)) is spec.required


def test_send_has_a_flag_per_input_but_the_token() -> None:
    options = {opt for action in parser()._actions for opt in action.option_strings}
    flags = {f"--{spec.name}" for spec in INPUTS if spec.flag}
    assert flags <= options
    assert "--cortex-api-token" not in options  # a secret: the environment only
    assert flags == {f"--{spec.name}" for spec in INPUTS} - {"--cortex-api-token"}


def test_empty_inputs_give_the_same_inputs_on_both_faces() -> None:
    from_flags = inputs_from_flags(parser().parse_args([]))
    from_action = inputs_from_action({})
    assert from_flags == from_action == Inputs()
    # An empty cortex-api-url stays empty: CORTEX_API_URL comes before the default.
    assert from_action.cortex_api_url == "" != CORTEX_URL


GIVEN = {
    "entity-tag": "payments-api",
    "environment": "production",
    "type": "ROLLBACK",
    "title": "Release 7",
    "sha": "c0ffee1",
    "url": "https://ci.example/run/9",
    "deployer-name": "Ada",
    "deployer-email": "ada@example.com",
    "timestamp": "2026-11-30T10:00:00Z",
    "custom-data": "version: 7",
    "fail-on-error": "false",
    "dry-run": "true",
}


def flag_argv(given: dict[str, str]) -> list[str]:
    """send's argv for the given inputs."""
    argv = []
    for name, value in given.items():
        if value == "true":
            argv.append(f"--{name}")
        elif value == "false":
            argv.append(f"--no-{name}")
        else:
            argv += [f"--{name}", value]
    return argv


@pytest.mark.parametrize(
    "spell", [str.upper, lambda n: n.upper().replace("-", "_")], ids=["hyphen", "underscore"]
)
def test_flags_and_both_input_spellings_read_the_same(spell: Any) -> None:
    environ = {f"INPUT_{spell(name)}": f"  {value}  " for name, value in GIVEN.items()}
    from_action = inputs_from_action(environ)
    from_flags = inputs_from_flags(parser().parse_args(flag_argv(GIVEN)))
    assert from_action == from_flags
    assert from_action.entity_tag == "payments-api" and from_action.dry_run is True
    assert from_action.fail_on_error is False and from_action.type == "ROLLBACK"


def test_the_hyphen_spelling_wins_and_a_blank_one_gives_way() -> None:
    both = {"INPUT_DEPLOYER-NAME": "runner", "INPUT_DEPLOYER_NAME": "other"}
    assert inputs_from_action(both).deployer_name == "runner"
    blank = {"INPUT_DEPLOYER-NAME": "  ", "INPUT_DEPLOYER_NAME": "other"}
    assert inputs_from_action(blank).deployer_name == "other"


def test_repeated_entity_flags_are_one_per_line() -> None:
    args = parser().parse_args(["--entity-tag", "a", "--entity-tag", "b,c"])
    assert inputs_from_flags(args).entity_tag == "a\nb,c"


def test_a_bad_boolean_input_names_the_input() -> None:
    with pytest.raises(InputError) as caught:
        inputs_from_action({"INPUT_DRY-RUN": "maybe"})
    assert caught.value.name == "dry-run"
    assert "'maybe'" in caught.value.problem


@pytest.mark.parametrize("spec", INPUTS, ids=lambda s: s.name)
def test_each_face_names_each_input_its_own_way(spec: Any) -> None:
    error = InputError(spec.name, "bad")
    send = Reporter((), out=io.StringIO(), err=io.StringIO())
    action = ActionReporter((), {}, out=io.StringIO())
    wanted = spec.fallback if not spec.flag else f"--{spec.name}"
    assert send.describe(error) == f"{wanted}: bad"
    assert action.describe(error) == f"the {spec.name} input: bad"
    assert send.takes(spec.name)
    assert action.takes(spec.name) is spec.action


def test_send_docs_name_what_only_send_has() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "send.md").read_text("utf-8")
    for spec in INPUTS:
        if not spec.action:
            assert f"`--{spec.name}` is `send`'s only" in text
        if not spec.flag:
            assert f"reads `{spec.fallback}`" in text
