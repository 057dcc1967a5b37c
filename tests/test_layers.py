"""Every import runs one way (README "Layout"; each package's docstring says who may import it).

- `contract` imports nothing of ours (and no Pulumi);
- `components` imports `contract` and itself, never `automation`;
- `automation` imports `contract` and itself; of `components` only `automation.stack` may (it runs
  the program);
- `automation.tasks` import only `automation.errors`, other tasks and `contract`: they also run
  inside the cluster as Jobs, without the CLI (no `console`, `commands`, `operations`, `stack`);
- `automation.operations` never import `commands`, `cli` or the concrete Pulumi adapter: they see
  `StackOps` only;
- a module of `automation.commands` imports no other command module, only
  `automation.commands.common` (what commands share lives there, in `console` or in `operations`);
- no cycles among our modules, counting imports inside functions too.
Read from the source with `ast`, so an import hidden in a function counts like any other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("automation", "components", "contract")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {
        module_name(p): p for top in OURS for p in (ROOT / top).rglob("*.py") if p != "Dockerfile"
    }


MODULES = our_modules()


def resolve(name: str) -> str | None:
    """The module of ours an imported name lives in (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def all_imports(path: Path) -> Iterator[str]:
    """Every absolute module name a file imports (ours or not)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module


def imported(module: str, path: Path) -> Iterator[str]:
    """Every module of ours that `module` imports, at top level or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target and target != module:
                yield target


GRAPH = {module: sorted(set(imported(module, path))) for module, path in MODULES.items()}


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(allowed: dict[str, tuple[str, ...]]) -> list[str]:
    """`importer -> imported` for every edge from a layer to something it may not import."""
    out = []
    for module, targets in GRAPH.items():
        layer = max((p for p in allowed if _within(module, p)), key=len, default=None)
        if layer is None:
            continue
        out += [f"{module} -> {t}" for t in targets if not _within(t, layer, *allowed[layer])]
    return out


def test_the_graph_sees_our_modules() -> None:
    assert {"contract.backup_layout", "components.app", "automation.cli"} <= set(GRAPH)
    assert "contract.backup_layout" in GRAPH["automation.tasks.backup"]
    assert "components.program" in GRAPH["automation.stack.render"]


def test_contract_imports_nothing_of_ours_and_no_pulumi() -> None:
    assert violations({"contract": ()}) == []
    for module, path in MODULES.items():
        if _within(module, "contract"):
            assert not [n for n in all_imports(path) if n.split(".")[0].startswith("pulumi")]


def test_components_never_import_automation() -> None:
    assert violations({"components": ("contract",)}) == []


def test_automation_imports_components_only_in_stack() -> None:
    allowed = {
        "automation": ("contract",),
        "automation.stack": ("automation", "contract", "components"),
    }
    assert violations(allowed) == []


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        ("automation.tasks", ("automation.errors", "contract")),
        (
            "automation.operations",
            ("automation.errors", "automation.stack.protocol", "automation.tasks", "contract"),
        ),
        ("automation.stack", ("automation.errors", "contract", "components")),
        ("automation.console", ("automation.errors",)),
    ],
)
def test_automation_layers(layer: str, allowed: tuple[str, ...]) -> None:
    assert violations({layer: allowed}) == []


def test_commands_import_no_other_command() -> None:
    shared = ("automation.commands", "automation.commands.common")
    assert [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _within(module, "automation.commands") and module not in shared
        for target in targets
        if _within(target, "automation.commands") and target not in shared
    ] == []


def test_no_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in GRAPH[module]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


def test_a_violation_is_found() -> None:
    """The checks can fail: components -> contract is fine, but not allowed in an empty layer."""
    assert any(v.startswith("components.") for v in violations({"components": ()}))
