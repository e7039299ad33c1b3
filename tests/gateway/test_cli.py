"""``pmpgw``: every command listed, and a command imports only its own module's dependencies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.cli import COMMANDS, build_parser, main
from gateway.store import Store

HEAVY = ("numba", "trio", "paho")


def commands_of(parser) -> list[str]:
    return list(parser._subparsers._group_actions[0].choices)


def test_the_table_names_every_command_of_every_module():
    assert sorted(commands_of(build_parser())) == sorted(COMMANDS)
    for command, module in COMMANDS.items():
        assert commands_of(build_parser(command)) == [c for c in commands_of(build_parser()) if COMMANDS[c] == module]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"    {command}" in listed for command in COMMANDS)


@pytest.mark.parametrize("command", [["status", "--once"], ["patients", "list"], ["devices", "list"],
                                     ["staff", "list"], ["alerts"], ["quarantine"], ["report", "coverage"]])
def test_a_light_command_imports_neither_numba_nor_trio_nor_paho(tmp_path, command):
    db = str(tmp_path / "pmp.db")
    Store.open(db).close()
    probe = (f"import sys; from gateway.cli import main; assert main({[*command, '--db', db]!r}) == 0; "
             f"heavy = {{name.split('.')[0] for name in sys.modules}} & {set(HEAVY)!r}; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", probe], check=True, stdout=subprocess.DEVNULL)
