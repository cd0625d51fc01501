"""The CLI package keeps its shape: small modules, every shared option defined once, no import
circle through it, and `latentkit --help` without torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
CLI = SRC / "latentkit" / "cli"
MAX_LINES = 300


def cli_modules() -> list[Path]:
    return sorted(CLI.glob("*.py"))


@pytest.mark.parametrize("path", cli_modules(), ids=lambda p: p.name)
def test_no_cli_module_is_over_300_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines"


def aliases(path: Path) -> dict[str, str]:
    """Module-level `Name = Annotated[...]` assignments: name -> the option, as an AST dump."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript)
                and ast.unparse(node.value.value) == "Annotated"):  # fmt: skip
            for target in node.targets:
                found[target.id] = ast.dump(node.value)
    return found


def inline_options(path: Path) -> list[tuple[str, str]]:
    """Every `Annotated[...]` written out in a command's signature: (where, AST dump)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                ann = arg.annotation
                if isinstance(ann, ast.Subscript) and ast.unparse(ann.value) == "Annotated":
                    found.append((f"{path.name}:{node.name}({arg.arg})", ast.dump(ann)))
    return found


def test_every_option_alias_is_defined_once_in_options_py() -> None:
    shared = aliases(CLI / "options.py")
    elsewhere = {p.name: sorted(aliases(p)) for p in cli_modules() if p.name != "options.py"}
    assert not any(elsewhere.values()), f"option aliases outside options.py: {elsewhere}"
    by_option: dict[str, list[str]] = {}
    for name, option in shared.items():
        by_option.setdefault(option, []).append(name)
    assert not [n for n in by_option.values() if len(n) > 1], "one option under two names"
    # an option spelled out in a signature is one only that command takes
    inline: dict[str, list[str]] = {}
    for path in cli_modules():
        for where, option in inline_options(path):
            assert option not in by_option, f"{where} repeats {by_option[option][0]}: use it"
            inline.setdefault(option, []).append(where)
    repeated = [places for places in inline.values() if len(places) > 1]
    assert not repeated, f"the same option written out twice, make it an alias: {repeated}"


def module_names() -> dict[Path, str]:
    names = {}
    for path in (SRC / "latentkit").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        names[path] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return names


def import_graph() -> dict[str, set[str]]:
    """latentkit module -> the latentkit modules it imports anywhere in its body (function-local
    imports included), plus the command modules the CLI app loads by name."""
    names = module_names()
    known = set(names.values())
    graph: dict[str, set[str]] = {name: set() for name in known}
    for path, name in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    graph[name] |= {target} if target in known else {base} & known
    from latentkit.cli.app import COMMANDS, GROUPS

    targets = [*COMMANDS.values(), *(t for _, cmds in GROUPS.values() for t in cmds.values())]
    graph["latentkit.cli.app"] |= {f"latentkit.cli.{t.partition(':')[0]}" for t in targets}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_runs_through_the_cli() -> None:
    """Command modules import options and common; the app loads them; nothing imports back up.
    Cycles elsewhere in latentkit (the server is being restructured separately) are not judged
    here."""
    graph = import_graph()
    assert "latentkit.cli.common" in graph["latentkit.cli.generate"]  # the graph sees imports
    through_cli = [c for c in cycles(graph) if any(m.startswith("latentkit.cli") for m in c)]
    assert not through_cli, through_cli
    importers = {name for name, deps in graph.items() if "latentkit.cli.app" in deps}
    assert importers <= {"latentkit.cli"}, f"only the package re-exports the app: {importers}"


def imported_by(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    script = f"{code}\nimport sys; print(*sys.modules, file=sys.stderr)"  # stdout has the help
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return set(run.stderr.split())


def test_the_app_and_its_help_do_not_import_torch() -> None:
    assert "torch" not in imported_by("import latentkit.cli")
    shown = imported_by("from latentkit.cli import main\nmain(['--help'])\nmain(['train'])")
    assert "torch" not in shown
    assert {m for m in shown if m.startswith("latentkit.cli.")} == {"latentkit.cli.app"}


def test_the_listing_shows_each_command_s_own_help() -> None:
    from latentkit.cli.app import app

    groups = [app, *(c for c in app.commands.values() if hasattr(c, "commands"))]
    for group in groups:
        for command in group.commands.values():
            if hasattr(command, "real"):
                assert command.help == command.real.help, command.name
                assert command.real.name == command.name
