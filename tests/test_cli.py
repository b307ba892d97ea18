"""``python -m hardway``: a command imports only its own module, and finds it."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from hardway import cli


def registered(module: str) -> list[str]:
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(sub)
    return list(sub.choices)


def test_command_homes_name_each_modules_commands() -> None:
    homes = {command: module for module in cli.COMMAND_MODULES for command in registered(module)}
    stale = {c: m for c, m in cli.COMMAND_HOMES.items() if homes.get(c) != m}
    assert not stale, f"COMMAND_HOMES names the wrong module (or a gone command): {stale}"
    missing = sorted(homes.keys() - cli.COMMAND_HOMES.keys())
    assert not missing, f"add these commands to COMMAND_HOMES: {missing}"


@pytest.mark.parametrize("command", ["layer", "copy", "nonsense"])
def test_a_command_builds_only_its_parser(command: str) -> None:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command in cli.COMMAND_HOMES:
        assert set(sub.choices) == set(registered(cli.COMMAND_HOMES[command]))
    else:  # an unknown command: every command, so argparse can list them
        assert set(sub.choices) == set(cli.COMMAND_HOMES)


def test_layer_create_does_not_import_the_registry_client() -> None:
    code = (
        "import sys; from hardway import cli; cli.build_parser('layer'); "
        "print(sorted(m for m in sys.modules "
        "if m in ('requests', 'hardway.distribution.registry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_still_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = capsys.readouterr().out
    assert all(command in shown for command in cli.COMMAND_HOMES)


@pytest.mark.parametrize("attempts", ["0", "-1", "many"])
def test_attempts_below_one_are_refused_with_a_usage_error(attempts: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["pull", "--attempts", attempts, "127.0.0.1:1/x:y", "rootfs"])
    assert exited.value.code == 2
    assert "--attempts: takes a number of tries, 1 or more" in capsys.readouterr().err
