"""The shape of training_plugin, checked against the tree: imports go one way, each module is
small, the entry is thin, features do not import each other, executors do not reach back into
the entry, no module imports another's private names, and pytest internals stay in
pytest_compat.py.

Every import statement counts, including those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "training_plugin"
MAX_LINES = 400
MAX_ENTRY_LINES = 150
#: pytest internals (private attributes and modules) that only pytest_compat.py may touch.
PYTEST_INTERNALS = ("_tw", "_file", "_current_line", "_loadconftestmodules", "_inidict",
                    "_getini", "_anonymous", "_parser")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in a module."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.append((base, alias.name, node.lineno))
    return found


def targets(name: str) -> set[str]:
    """The training_plugin modules a module imports (a submodule when the imported name is
    one, else the module named in the statement)."""
    out: set[str] = set()
    for module, imported, _ in imports_of(name):
        if imported is not None and f"{module}.{imported}" in MODULES:
            out.add(f"{module}.{imported}")
        elif module in MODULES:
            out.add(module)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def feature_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "features" else None


def test_the_package_has_the_modules_this_test_reads():
    assert {"training_plugin.plugin", "training_plugin.session",
            "training_plugin.features.gates"} <= set(MODULES)


def test_no_import_circles():
    graph = {name: targets(name) for name in MODULES}
    assert cycles(graph) == []


def test_the_circle_check_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_is_small(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    limit = MAX_ENTRY_LINES if name == "training_plugin.plugin" else MAX_LINES
    assert lines <= limit, f"{MODULES[name]} has {lines} lines (at most {limit})"


def test_no_feature_imports_another_feature():
    crossings = [
        f"{name} imports {target}"
        for name in MODULES if feature_of(name)
        for target in targets(name)
        if feature_of(target) and feature_of(target) != feature_of(name)
    ]
    assert crossings == []


def test_no_executor_imports_the_entry_or_the_session():
    upstream = {"training_plugin", "training_plugin.plugin", "training_plugin.session",
                "training_plugin.collect.pipeline"}
    reaching_back = [
        f"{name} imports {target}"
        for name in MODULES if name.startswith("training_plugin.executors")
        for target in targets(name) if target in upstream
    ]
    assert reaching_back == []


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{name}:{line} imports {imported} from {module}"
        for name in MODULES
        for module, imported, line in imports_of(name)
        if module.startswith("training_plugin") and imported and imported.startswith("_")
        and not imported.startswith("__") and module != name
    ]
    assert private == []


def test_pytest_internals_live_in_pytest_compat():
    offenders = []
    for name, path in MODULES.items():
        if name == "training_plugin.pytest_compat":
            continue
        for module, _, line in imports_of(name):
            if module == "_pytest" or module.startswith("_pytest."):
                offenders.append(f"{name}:{line} imports {module}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in PYTEST_INTERNALS:
                offenders.append(f"{name}:{node.lineno} uses .{node.attr}")
    assert offenders == []
