"""The modules of msvar form a stack: no module imports (at the top or inside a function) a module that imports it, directly
or through others. Relative (`from .core import`) and absolute (`from msvar.core import`) imports both count."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "msvar"


def msvar_imports(path: Path) -> set:
    "msvar modules imported anywhere in `path`, function-level and relative imports included."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 and mod: out.add(mod.split(".")[0])                      # from .core import x
            elif node.level == 1 or mod == "msvar": out |= {a.name for a in node.names}  # from . import core / from msvar import core
            elif mod.startswith("msvar."): out.add(mod.split(".")[1])                   # from msvar.core import x
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("msvar.")}
    return out - {path.stem}


def import_graph() -> dict:
    mods = {p.stem: p for p in PKG.glob("*.py") if p.name not in ("_modidx.py", "__init__.py")}
    return {m: msvar_imports(p) & set(mods) for m, p in mods.items()}


def cycles(graph: dict) -> list:
    "Every pair (a, b), a < b, with a path a → … → b and one b → … → a."
    def reach(a):
        seen, todo = set(), [a]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen: seen.add(n); todo.append(n)
        return seen
    r = {m: reach(m) for m in graph}
    return sorted((a, b) for a in graph for b in r[a] if a < b and a in r[b])


def test_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    g = import_graph()
    assert {"core", "train", "train_var", "tokenizer", "hit"} <= set(g)
    assert cycles(g) == [], f"import cycles between msvar modules: {cycles(g)}"


def test_generic_loop_sits_below_the_models():
    "msvar.train (the one training loop) imports no model module; the models' training code imports it."
    g = import_graph()
    assert g["train"] <= {"core", "data"}, g["train"]
    assert "train" in g["tokenizer"] and "train" in g["hit"] and "train" in g["train_var"]
