"""The architecture stays as drawn: a pure core, a public API, and help for every command."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from click.testing import CliRunner

import binance_streamer
from binance_streamer.cli import main

SRC = Path(binance_streamer.__file__).parent


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module if node.module.startswith("binance_streamer") else
                      node.module.split(".")[0])
    return found


def test_core_imports_only_the_standard_library_and_msgspec() -> None:
    """Nothing in core/ does I/O through a third-party library or reaches outside core/."""
    allowed = set(sys.stdlib_module_names) | {"msgspec", "__future__"}
    for path in (SRC / "core").glob("*.py"):
        for name in imports_of(path):
            if name.startswith("binance_streamer"):
                assert name.startswith("binance_streamer.core") or name == "binance_streamer.errors"
            else:
                assert name in allowed, (path.name, name)


def test_the_error_tree_imports_nothing_but_the_standard_library() -> None:
    """errors.py is a leaf: the core may raise its exceptions without pulling in any I/O."""
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    assert imports_of(SRC / "errors.py") <= allowed


def test_only_the_cli_imports_the_cli_framework() -> None:
    """click and rich stay in the cli package."""
    for path in SRC.rglob("*.py"):
        if "cli" not in path.relative_to(SRC).parts:
            assert not imports_of(path) & {"click", "rich"}, path


def test_public_api_is_exported() -> None:
    """Every name in __all__ exists, and the tutorial's class is among them."""
    for name in binance_streamer.__all__:
        assert hasattr(binance_streamer, name), name
    assert "BinanceStreamer" in binance_streamer.__all__


def test_every_command_has_help_a_newcomer_can_read() -> None:
    """Each command's --help exits 0 and explains itself in more than a few words."""
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert command.help and len(command.help.split()) >= 8, name
        for param in command.params:
            if param.name != "help" and param.__class__.__name__ != "Argument":
                assert getattr(param, "help", None), (name, param.name)


def test_ruff_and_mypy_are_clean() -> None:
    """The whole tree passes ruff, and src/ passes mypy --strict."""
    import subprocess

    root = SRC.parent.parent
    bin_dir = Path(sys.executable).parent
    ruff = subprocess.run([bin_dir / "ruff", "check", "--quiet", "."], cwd=root,
                          capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = subprocess.run([bin_dir / "mypy"], cwd=root, capture_output=True, text=True)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
