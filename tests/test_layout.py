"""The package layout stays a flow: no project module imports (at module level) one that imports it
back, directly or through others."""

from __future__ import annotations

import ast

from components.config import PROJECT_ROOT

PACKAGES = ("components", "pipelines", "corpora")


def _module_imports() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (PROJECT_ROOT / package).rglob("*.py")]
    names = {str(p.relative_to(PROJECT_ROOT).with_suffix("")).replace("/", ".").removesuffix(".__init__"): p
             for p in files}
    imports: dict[str, set[str]] = {}
    for name, path in names.items():
        found = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        imports[name] = {other for other in found if other in names and other != name}
    return imports


def test_no_module_level_import_cycle():
    imports = _module_imports()
    assert len(imports) > 40
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(imports[module]):
            assert state.get(other) != "open", f"import cycle: {' -> '.join([*path, other])}"
            if other not in state:
                visit(other, [*path, other])
        state[module] = "done"

    for module in sorted(imports):
        if module not in state:
            visit(module, [module])
