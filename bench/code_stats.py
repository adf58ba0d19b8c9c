"""Size and shape of the package, for the refactor issue's before/after: lines per module, the longest functions,
and the msvar-internal import graph (imports anywhere in a module, function-level ones included) with its cycles.

    python bench/code_stats.py [--top 10]
"""
import argparse, ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "msvar"

def module_imports(path: Path) -> set:
    "msvar modules imported anywhere in `path` (top level or inside functions; `from .core import` and `from msvar.core import` alike)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 and mod: out.add(mod.split(".")[0])
            elif node.level == 1 or mod == "msvar": out |= {a.name for a in node.names}
            elif mod.startswith("msvar."): out.add(mod.split(".")[1])
        elif isinstance(node, ast.Import): out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("msvar.")}
    return out - {path.stem}

def import_graph(pkg: Path = PKG) -> dict:
    "{module: msvar modules it imports} for every module of the package (tests/test_layering.py checks it has no cycle)."
    mods = {p.stem: p for p in pkg.glob("*.py") if p.name not in ("_modidx.py", "__init__.py")}
    return {m: module_imports(p) & set(mods) for m, p in mods.items()}

def cycles(graph: dict) -> list:
    "Every pair (a, b) with a path a → b and b → a (a < b)."
    def reach(a):
        seen, todo = set(), [a]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen: seen.add(n); todo.append(n)
        return seen
    r = {m: reach(m) for m in graph}
    return sorted((a, b) for a in graph for b in r[a] if a < b and a in r.get(b, ()))

def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): yield node.name, node.end_lineno - node.lineno + 1

if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--top", type=int, default=10); a = ap.parse_args()
    mods = sorted(p for p in PKG.glob("*.py") if p.name not in ("_modidx.py", "__init__.py"))
    total = 0
    for p in mods:
        n = len(p.read_text().splitlines()); total += n; print(f"{p.name:16s} {n:5d} lines")
    print(f"{'total':16s} {total:5d} lines (without _modidx.py and __init__.py)")
    fns = sorted(((n, f"{p.stem}.{f}") for p in mods for f, n in functions(p)), reverse=True)[: a.top]
    print("longest functions:", ", ".join(f"{name} {n}" for n, name in fns))
    print("import cycles:", cycles(import_graph()) or "none")
