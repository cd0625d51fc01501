"""The architecture as a test: no import circle anywhere in latentkit, and data flows one way,
data -> models -> diffusion -> families -> pipeline -> ops -> interfaces (imports inside
functions count too)."""

from __future__ import annotations

from test_cli_structure import cycles, import_graph

# the lowest layer a module may import from is itself; shared helpers sit under everything
LAYERS = {
    "errors": 0, "config": 0, "files": 0, "version": 0,
    "data": 1,
    "models": 2,
    "diffusion": 3,
    "infotext": 4, "outputs": 4, "families": 4,
    "pipeline": 5,
    "ops": 6, "train": 6, "eval": 6,
    "cli": 7, "server": 7, "__main__": 7, "latentkit": 7,  # the package's lazy `Pipeline`
}  # fmt: skip


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_latentkit_has_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_no_module_imports_a_higher_layer() -> None:
    graph = import_graph()
    assert {layer(m) for m in graph} <= set(LAYERS), "a new top-level module needs a layer"
    upward = [
        f"{a} -> {b}"
        for a, deps in sorted(graph.items())
        for b in sorted(deps)
        if LAYERS[layer(b)] > LAYERS[layer(a)]
    ]
    assert upward == []


def test_every_interface_module_is_under_300_lines() -> None:
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "latentkit"
    files = [p for folder in ("cli", "server") for p in (src / folder).glob("*.py")]
    lines = {str(p.relative_to(src)): len(p.read_text().splitlines()) for p in files}
    assert len(files) > 20 and {k: n for k, n in lines.items() if n >= 300} == {}
