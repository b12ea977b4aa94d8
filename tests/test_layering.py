"""The package's layers, read from the source (``ast``): every import, at module level or inside
a function, goes down the list below or stays in its own package, and no import cycle exists.

Why: cycles were hidden by imports inside functions; they break on the next refactor and make
start-up order matter. An import inside a function is for start-up time only (heavy modules
such as torch, Lightning or onnxruntime) and says so with a ``# lazy: ...`` comment.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rsseg"

#: top to bottom: a module imports from its own package or from a lower layer, never upwards
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("experiment", "demo"),
    ("ssl", "retrieval", "explain", "viewer"),
    ("calibration",),  # rsseg calibrate: predicts a split as evaluate does
    ("training", "evaluate"),
    ("distributed",),  # several processes: launch checks and rank-0 rules of training
    ("report",),
    ("infer",),
    ("trained",),  # a trained model at inference time: checkpoint, Predictor, ONNX
    ("data", "models", "metrics", "reliability", "plots", "gis"),
    ("config",),
    ("runtime", "allocator", "classes"),
    ("io", "safe_load"),
    ("",),  # rsseg/__init__.py: the version
    ("errors",),
]

#: (importer, imported) -> why the upward import is allowed (keep this short)
ALLOWED_UPWARD = {
    ("rsseg.config.model", "rsseg.models.pretrained"):
        "validating model.pretrained needs the weights-source registry; lazy (torch)",
}

#: rsseg modules an import inside a function may name without a ``# lazy:`` comment
LAZY_EXEMPT_PACKAGES = ("rsseg.cli",)  # the CLI imports each command's code lazily by design


def modules(src: Path) -> dict[str, Path]:
    out = {}
    for path in src.rglob("*.py"):
        parts = ["rsseg", *path.relative_to(src).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(src: Path) -> list[tuple[str, str, int, bool, str]]:
    """(importer, imported module, line, inside a function, source line) for every rsseg import."""
    mods = modules(src)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    found = []
    for mod, path in mods.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        in_function = {
            id(node)
            for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn)
        }
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    head = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                names = [head, *(f"{head}.{a.name}" for a in node.names)]
            else:
                continue
            targets = {resolve(n) for n in names if n == "rsseg" or n.startswith("rsseg.")}
            for target in sorted(t for t in targets if t):
                if target != mod and not mod.startswith(target + "."):  # a package's own parents
                    found.append((mod, target, node.lineno, id(node) in in_function, lines[node.lineno - 1]))
    return found


def component(mod: str) -> str:
    return mod.split(".")[1] if "." in mod else ""


def layer(mod: str) -> int:
    for i, names in enumerate(LAYERS):
        if component(mod) in names:
            return i
    raise AssertionError(f"{mod} is in no layer: add its package to LAYERS in tests/test_layering.py")


def upward_imports(src: Path) -> list[str]:
    bad = []
    for mod, target, line, _, _ in imports(src):
        if component(mod) == component(target) or (mod, target) in ALLOWED_UPWARD:
            continue
        if layer(target) <= layer(mod):
            bad.append(f"{mod}:{line} imports {target} (layer {LAYERS[layer(target)]} is not below "
                       f"{LAYERS[layer(mod)]})")
    return bad


def cycles(src: Path) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges: dict[str, set[str]] = {m: set() for m in modules(src)}
    for mod, target, *_ in imports(src):
        edges[mod].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def _says_why(lines: list[str], line: int) -> bool:
    """A ``# lazy:`` comment on the import's line or above it in the same run of imports."""
    i = line - 1
    while i >= 0:
        text = lines[i].strip()
        if "# lazy:" in text:
            return True
        if i < line - 1 and not text.startswith(("from ", "import ", "#")):
            return False
        i -= 1
    return False


def unexplained_lazy_imports(src: Path) -> list[str]:
    bad = []
    mods = modules(src)
    for mod, target, line, inside, _ in imports(src):
        if not inside or mod.startswith(LAZY_EXEMPT_PACKAGES):
            continue
        if not _says_why(mods[mod].read_text().splitlines(), line):
            bad.append(f"{mod}:{line} imports {target} inside a function without a '# lazy: why' comment")
    return sorted(set(bad))


def test_every_module_has_a_layer():
    for mod in modules(SRC):
        layer(mod)


def test_no_import_cycles():
    found = cycles(SRC)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_upward_imports():
    bad = upward_imports(SRC)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_imports_inside_functions_say_why():
    bad = unexplained_lazy_imports(SRC)
    assert not bad, "\n".join(bad)


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "rsseg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("from rsseg.data.b import x\n")
    (pkg / "data" / "b.py").write_text("def f():\n    from rsseg.data.a import y\n")
    (pkg / "io.py").write_text("def g():\n    # lazy: test\n    import rsseg.cli\n")
    (pkg / "cli.py").write_text("")
    assert cycles(pkg) == [["rsseg.data.a", "rsseg.data.b"]]
    assert upward_imports(pkg) == ["rsseg.io:3 imports rsseg.cli (layer ('cli',) is not below ('io', 'safe_load'))"]
    assert unexplained_lazy_imports(pkg) == [
        "rsseg.data.b:2 imports rsseg.data.a inside a function without a '# lazy: why' comment"]
