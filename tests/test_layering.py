"""The modules of msvar form a stack: no module imports (at the top or inside a function) a module that imports it, directly
or through others. Relative (`from .core import`) and absolute (`from msvar.core import`) imports both count."""
import importlib.util
from pathlib import Path

# the import graph and the cycle finder are bench/code_stats.py's (it prints the same graph for the refactor's before/after)
_spec = importlib.util.spec_from_file_location("code_stats", Path(__file__).resolve().parents[1] / "bench" / "code_stats.py")
_cs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(_cs)
import_graph, cycles = _cs.import_graph, _cs.cycles


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
