"""The import rules of docs/architecture.md, checked on the source: each part imports only the parts
below it, and the report and the models stay free of the libraries they must not need."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fcnlab"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
ROW = re.compile(r"^\| `(?P<part>[\w.]+)` \|(?P<may>[^|]*)\|")


def rules() -> dict[str, set[str]]:
    """Part -> the fcnlab parts it may import, from the table in docs/architecture.md."""
    table = {}
    for line in DOC.read_text().splitlines():
        if m := ROW.match(line):
            table[m["part"]] = set(re.findall(r"`([\w.]+)`", m["may"]))
    return table


def part_of(module: str) -> str:
    """``fcnlab.training.run`` -> ``training``; top-level modules are their own part."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "fcnlab"


def imports(path: Path) -> set[str]:
    """Every module imported anywhere in ``path`` (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


def test_the_table_covers_every_part_of_the_package():
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts = {p for p in parts if p not in ("__pycache__", "__init__", "conf", "sweeps")}
    assert parts == set(rules()) - {"fcnlab"}, "docs/architecture.md must list every part of src/fcnlab"


def test_each_part_imports_only_what_the_table_allows():
    allowed = rules()
    broken = []
    for path in sorted(SRC.rglob("*.py")):
        own = part_of(module_name(path))
        for mod in imports(path):
            if mod.split(".")[0] != "fcnlab":
                continue
            other = part_of(mod)
            if other not in (own, "fcnlab") and other not in allowed[own]:
                broken.append(f"{module_name(path)} imports {mod} ({own} may import: {sorted(allowed[own])})")
    assert not broken, "\n".join(broken)


def third_party(part: str) -> dict[str, set[str]]:
    return {module_name(p): {m.split(".")[0] for m in imports(p)} for p in (SRC / part).rglob("*.py")}


def test_reporting_reads_files_without_torch_or_lightning():
    for module, libs in third_party("reporting").items():
        assert not libs & {"torch", "torchvision", "lightning", "torchmetrics"}, module


def test_models_know_nothing_of_lightning_or_hydra():
    for module, libs in third_party("models").items():
        assert not libs & {"lightning", "hydra", "omegaconf"}, module
