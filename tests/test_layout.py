"""The package's layout (docs/design.md, "Layout"): its parts import only downhill, and nothing imports in a cycle.

Every module of diffusion_lib is parsed (not imported) and each `import`/`from ... import` of
another diffusion_lib module is resolved, relative imports included, wherever it stands (top of
the file or inside a function). Parts, from the bottom:

    utils < process < model < data < samplers < metrics < training < course < cli

A module may import from its own part or from a part below it; the package's __init__ files are
exempt (they re-export). The course part is never imported by the rest; the top-level names of the
public API (docs/design.md) stay importable. Only the command line, at the top, may use the course part. Deterministic: designed false-failure rate 0.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import diffusion_lib

PACKAGE = Path(diffusion_lib.__file__).resolve().parent
PARTS = ["utils", "process", "model", "data", "samplers", "metrics", "training", "course", "cli"]
PUBLIC = ["Schedule", "linear_schedule", "cosine_schedule", "q_step", "q_sample", "posterior_mean_var",
          "predict_x0", "mean_from_eps", "normal_kl", "ddpm_step", "ddpm_sample", "ddim_timesteps", "ddim_step",
          "ddim_sample", "ddim_invert", "slerp", "dpm_solver_sample",
          "guided"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The diffusion_lib modules that `path` imports (as dotted names, submodules resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("diffusion_lib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("diffusion_lib"):
                continue
            for alias in node.names:                     # `from . import metrics` imports a module
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).exists()
                          or (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else target)
    return {m for m in found if m != name}


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}


def part_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None                                      # diffusion_lib itself
    return parts[1] if parts[1] in PARTS else ("cli" if parts[1] in ("cli", "__main__") else None)


def test_every_module_belongs_to_a_part():
    loose = [m for m in MODULES if m != "diffusion_lib" and part_of(m) is None]
    assert not loose, f"modules outside the parts {PARTS}: {loose}"


@pytest.mark.parametrize("module", [m for m in MODULES if not MODULES[m].name == "__init__.py"])
def test_imports_run_downhill(module):
    here = PARTS.index(part_of(module))
    uphill = [m for m in GRAPH[module] if part_of(m) is not None and PARTS.index(part_of(m)) > here]
    assert not uphill, f"{module} ({PARTS[here]}) imports from a part above it: {uphill}"
    assert "diffusion_lib" not in GRAPH[module], f"{module} imports the package's top level"


def test_no_import_cycle():
    state: dict[str, int] = {}                           # 1: on the path, 2: done

    def visit(m, path):
        state[m] = 1
        for n in sorted(GRAPH.get(m, ())):
            if n not in MODULES:
                continue
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [m])


def test_the_library_never_imports_the_course_part():
    users = sorted(m for m, deps in GRAPH.items() if part_of(m) not in ("course", "cli", None)
                   and any(part_of(d) == "course" for d in deps))
    assert not users, f"these modules import diffusion_lib.course: {users}"


@pytest.mark.parametrize("name", PUBLIC)
def test_the_public_api_is_importable_from_the_top(name):
    assert callable(getattr(diffusion_lib, name)) and name in diffusion_lib.__all__
