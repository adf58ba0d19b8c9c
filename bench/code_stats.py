"""Size and shape of the package, for before/after comparisons of a refactor: lines per module, characters per
line, lines over 120 characters, lines that hold more than one statement (`a; b` and `if x: y`), imports of msvar
modules inside functions, the longest functions, and the msvar-internal import graph (imports anywhere in a module,
function-level ones included) with its cycles.

    python bench/code_stats.py [--top 10] [--pkg path/to/msvar] [--nbs path/to/nbs]

With --nbs it also prints, per notebook, its code cells, the longest code cell (lines) and the index of the first cell
that shows a picture or a table (an image or HTML output, or an image in markdown).
"""

import argparse, ast, json
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "msvar"


def module_imports(path: Path) -> set:
    "msvar modules imported anywhere in `path` (top level or inside functions; `from .core import` and `from msvar.core import` alike)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 and mod:
                out.add(mod.split(".")[0])
            elif node.level == 1 or mod == "msvar":
                out |= {a.name for a in node.names}
            elif mod.startswith("msvar."):
                out.add(mod.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("msvar.")}
    return out - {path.stem}


def import_graph(pkg: Path = PKG) -> dict:
    "{module: msvar modules it imports} for every module of the package (tests/test_layering.py checks it has no cycle)."
    mods = {p.stem: p for p in pkg.glob("*.py") if p.name not in ("_modidx.py", "__init__.py")}
    return {m: module_imports(p) & set(mods) for m, p in mods.items()}


def reachable(graph: dict, start: str) -> set:
    "Every module `start` imports, directly or through others."
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def cycles(graph: dict) -> list:
    "Every pair (a, b) with a path a → b and b → a (a < b)."
    r = {m: reachable(graph, m) for m in graph}
    return sorted((a, b) for a in graph for b in r[a] if a < b and a in r.get(b, ()))


def generated(line: str, index: int) -> bool:
    "Lines nbdev writes itself (the module docstring from the chapter's description, `__all__`), not counted over 120."
    return (index == 0 and line.startswith('"""')) or line.startswith("__all__ = [")


def density(path: Path) -> dict:
    """Line counts of one module: lines, non-blank lines and their characters, hand-written lines over 120,
    `;` joins, one-line compounds (`if x: y`)."""
    text = path.read_text()
    lines = text.splitlines()
    hand = [line for i, line in enumerate(lines) if not generated(line, i)]
    body = [line for line in lines if line.strip()]
    starts = {}
    compound = 0
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.stmt):
            starts[node.lineno] = starts.get(node.lineno, 0) + 1
            inner = [b for f in ("body", "orelse", "finalbody", "handlers") for b in getattr(node, f, [])]
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                compound += any(b.lineno == node.lineno for b in inner if isinstance(b, ast.stmt))
    semis = sum(1 for n in starts.values() if n > 1) - compound
    return dict(
        lines=len(lines),
        nonblank=len(body),
        chars=sum(len(line) for line in body),
        over120=sum(len(line) > 120 for line in hand),
        semicolon=max(semis, 0),
        compound=compound,
    )


def nested_imports(path: Path) -> int:
    "Imports of msvar modules inside function bodies (they hide the dependency graph from a reader of the top)."
    n = 0
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level >= 1 or (node.module or "").startswith("msvar")):
                    n += 1
                elif isinstance(node, ast.Import) and any(a.name.startswith("msvar") for a in node.names):
                    n += 1
    return n


def functions(path: Path):
    "(name, lines, statements) of every function; statements do not depend on how the code is wrapped."
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n_stmts = sum(isinstance(s, ast.stmt) for s in ast.walk(node)) - 1
            yield node.name, node.end_lineno - node.lineno + 1, n_stmts


def shows_something(cell: dict) -> bool:
    "A picture or a table: an image or HTML output of a code cell, or an image or table in a markdown cell."
    if cell["cell_type"] == "markdown":
        src = "".join(cell["source"])
        return "![" in src or "\n|---" in src or src.startswith("|")
    return any(k.startswith("image/") or k == "text/html" for o in cell.get("outputs", []) for k in o.get("data", {}))


def notebook_stats(nbs: Path) -> list:
    "(notebook, code cells, longest code cell in lines, index of the first cell that shows a picture or table or None)."
    rows = []
    for p in sorted(nbs.glob("*.ipynb")):
        cells = json.loads(p.read_text())["cells"]
        code = [len("".join(c["source"]).splitlines()) for c in cells if c["cell_type"] == "code"]
        first = next((i for i, c in enumerate(cells) if shows_something(c)), None)
        rows.append((p.stem, len(code), max(code, default=0), first))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--pkg", default=str(PKG), help="the package folder to measure (default: this repository's)")
    ap.add_argument("--nbs", help="also the notebooks of this folder: longest code cell, first picture or table")
    a = ap.parse_args(argv)
    pkg = Path(a.pkg)
    mods = sorted(p for p in pkg.glob("*.py") if p.name not in ("_modidx.py", "__init__.py"))
    rows = {p.stem: dict(density(p), nested=nested_imports(p)) for p in mods}
    print(
        f"{'module':18s} {'lines':>6s} {'chars/line':>10s} {'>120':>5s} {';':>4s} {'if x: y':>7s} {'fn imports':>10s}"
    )
    for m, r in rows.items():
        print(
            f"{m:18s} {r['lines']:6d} {r['chars'] / max(r['nonblank'], 1):10.1f} {r['over120']:5d} {r['semicolon']:4d} "
            f"{r['compound']:7d} {r['nested']:10d}"
        )
    tot = {k: sum(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    print(
        f"{'total':18s} {tot['lines']:6d} {tot['chars'] / tot['nonblank']:10.1f} {tot['over120']:5d} "
        f"{tot['semicolon']:4d} {tot['compound']:7d} {tot['nested']:10d}   (without _modidx.py and __init__.py)"
    )
    print(
        f"lines over 120 characters: {100 * tot['over120'] / tot['lines']:.1f} % of all lines; "
        f"characters per non-blank line: {tot['chars'] / tot['nonblank']:.1f}"
    )
    fns = [(f"{p.stem}.{f}", n, k) for p in mods for f, n, k in functions(p)]
    by_lines = sorted(fns, key=lambda r: -r[1])[: a.top]
    by_stmts = sorted(fns, key=lambda r: -r[2])[: a.top]
    print("longest functions (lines):", ", ".join(f"{name} {n}" for name, n, _ in by_lines))
    print("longest functions (statements):", ", ".join(f"{name} {k}" for name, _, k in by_stmts))
    print("import cycles:", cycles(import_graph(pkg)) or "none")
    if a.nbs:
        print(f"{'notebook':22s} {'code cells':>10s} {'longest':>7s} {'first picture/table':>19s}")
        for name, n, longest, first in notebook_stats(Path(a.nbs)):
            print(f"{name:22s} {n:10d} {longest:7d} {'none' if first is None else first:>19}")


if __name__ == "__main__":
    main()
