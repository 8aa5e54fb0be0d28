"""An architecture's Settings class read from its module's source without running the module,
which imports torch (about 2 s): the command line checks every key, the architecture's own ones
included, in a fraction of a second. Only what the class needs is executed: the module's imports
from the torch-free modules below, its plain module-level assignments and the class itself. When
that is not enough (a Settings class built some other way), the caller imports the module."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from components.settings import ModelSettings

LIGHT_MODULES = ("typing", "dataclasses", "components.settings", "components.vocabulary")


def _settings_name(architecture: ast.ClassDef) -> str | None:
    for statement in architecture.body:
        if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Name)
                and [getattr(t, "id", None) for t in statement.targets] == ["Settings"]):
            return statement.value.id
    return None


def settings_from_source(entry: str) -> type[ModelSettings] | None:
    """The Settings class of a registry entry 'module:Class', or None when it cannot be read
    without importing the module."""
    module, _, class_name = entry.partition(":")
    spec = importlib.util.find_spec(module)  # finds the file; runs only the (light) parent packages
    if spec is None or spec.origin is None:
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    architecture = classes.get(class_name)
    if architecture is None:
        return None
    name = _settings_name(architecture)
    if name is None:  # no own settings: the shared ones, if it extends the base class directly
        bases = [getattr(base, "id", None) for base in architecture.bases]
        return ModelSettings if bases == ["VAE"] else None
    if name not in classes:
        return None
    # Compiled without `from __future__ import annotations` (dont_inherit, and the module's own
    # future import is left out), the annotations are evaluated here, in this namespace, so the
    # class's type hints resolve without its module.
    namespace: dict = {"__name__": __name__}
    for statement in tree.body:
        light_import = isinstance(statement, ast.ImportFrom) and statement.module in LIGHT_MODULES
        if light_import or isinstance(statement, ast.Assign | ast.AnnAssign):
            try:
                exec(compile(ast.Module([statement], []), spec.origin, "exec", dont_inherit=True), namespace)
            except Exception:  # an assignment that needs torch: the class must not need it
                continue
    try:
        exec(compile(ast.Module([classes[name]], []), spec.origin, "exec", dont_inherit=True), namespace)
    except Exception:
        return None
    settings = namespace[name]
    return settings if isinstance(settings, type) and issubclass(settings, ModelSettings) else None
