"""The package's layers: ops -> models -> tasks (superres, derivatives, prior) -> cli.

Every ``import`` in the package (module level or inside functions) is read with ``ast``; a module
may import from its own layer or a lower one only. The top-level ``funknn_fast`` facade re-exports
names from every layer, so only the command line may import it.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = {"ops": 0, "kernels": 0, "_C": 0, "extras": 0, "atomic_files": 0, "models": 1,
          "superres": 2, "derivatives": 2, "prior": 2, "cli": 3, "__main__": 3}
FACADE = 3  # ``import funknn_fast`` / ``from funknn_fast import name``


def _source_modules() -> dict[str, pathlib.Path]:
    """Dotted name -> file, for every module of the package (kernels/ is funknn_fast.kernels)."""
    modules = {}
    roots = ((ROOT / "funknn_fast", "funknn_fast"), (ROOT / "kernels", "funknn_fast.kernels"))
    for folder, prefix in roots:
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def layer_of(module: str) -> int:
    """Layer of a dotted module name inside funknn_fast (the facade for the package itself)."""
    parts = module.split(".")
    if parts == ["funknn_fast"]:
        return FACADE
    return LAYERS[parts[1]]


def imported_modules(path: pathlib.Path, module: str) -> list[str]:
    """Every funknn_fast module that ``path`` imports (``from funknn_fast import x`` counts as the
    facade unless x is a subpackage or module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base == "funknn_fast":
                found += [f"funknn_fast.{alias.name}" if alias.name in LAYERS else base
                          for alias in node.names]
            else:
                found.append(base)
    return [name for name in found if name == "funknn_fast" or name.startswith("funknn_fast.")]


MODULES = _source_modules()


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "funknn_fast":
            layer_of(module)  # raises KeyError for a module outside the known layers


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "funknn_fast"))
def test_no_import_from_a_higher_layer(module):
    own = layer_of(module)
    upward = [name for name in imported_modules(MODULES[module], module) if layer_of(name) > own]
    assert not upward, f"{module} (layer {own}) imports from higher layers: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    path = tmp_path / "fake.py"
    path.write_text("def f():\n    from funknn_fast.superres.inference import render\n")
    assert imported_modules(path, "funknn_fast.ops.fake") == ["funknn_fast.superres.inference"]
    assert layer_of("funknn_fast.superres.inference") > layer_of("funknn_fast.ops.fake")


def test_public_api_from_the_top():
    import funknn_fast

    assert set(funknn_fast.__all__) >= {"patch_sample", "patch_sample_jets", "backends",
                                        "BackendUnavailableError", "FunkNN", "load_model",
                                        "render"}
    for name in funknn_fast.__all__:
        assert getattr(funknn_fast, name) is not None
    from funknn_fast.models.funknn import FunkNN

    assert funknn_fast.FunkNN is FunkNN
