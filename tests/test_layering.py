"""The modules of msvar form a stack, and the models sit below training.

No module imports (at the top or inside a function) a module that imports it, directly or through others. The model
modules (quantizer, tokenizer, HIT tokenizer, VAR) import no training code: not the loop, the data pipeline, the
losses or a model's trainer, not even through the modules they import; so loading a model for inference loads none
of them. Relative (`from .core import`) and absolute (`from msvar.core import`) imports both count.

    MSVAR_PKG=/path/to/msvar pytest tests/test_layering.py     # checks another copy of the package
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(os.environ.get("MSVAR_PKG", ROOT / "msvar")).resolve()

# the import graph and the cycle finder are bench/code_stats.py's (it prints the same graph for before/after)
_cs = load_script("bench/code_stats.py")
cycles = _cs.cycles
reachable = _cs.reachable

MODELS = ("quantize", "tokenizer", "hit", "var")

# The package as a stack, bottom to top: a module imports only modules of lower layers. A new module gets a layer
# here, so that the drawing stays true. (The checkpoint module sits below the models: they read and write their own
# files with it, and it knows no model.)
LAYERS = (
    ("core",),                                       # errors, tensor ranges, images on screen, seeds, presets
    ("files",),                                      # reading images safely, atomic writes, held output folders
    ("checkpoint", "model_file", "data", "quantize"),  # file I/O, the data pipeline, the quantizers
    ("lpips",),                                      # the perceptual network, read with checkpoint's loaders
    ("metrics", "fetch"),                            # the paper's metrics; data sets and weights into a cache
    ("tokenizer", "var"),                            # the models
    ("hit",),                                        # the HIT tokenizer around a tokenizer; the build factory
    ("losses", "inference"),                         # CE + DPO on HIT tokens; super-resolving any image
    ("gpu",),                                        # GPU launch checks and the trainers' memory plans
    ("train", "api", "evaluate"),                    # the one training loop; the Python API; the paper's tables
    ("train_tokenizer", "train_var", "quality"),     # the trainers; the small model measured
    ("reproduce",),                                  # the whole method end to end
    ("cli",),                                        # the commands: options they share, then one module per family
    ("cli_reproduce", "cli_data", "cli_sr", "cli_train"),  # one module per family of commands: options checked once
    ("devtools",),                                   # README generation and benchmark helpers
)
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}
TRAINING = ("train", "data", "losses")            # the loop, the data pipeline, the losses; and every trainer below


def import_graph() -> dict:
    return _cs.import_graph(PKG)


def is_training(module: str) -> bool:
    "The loop, the data pipeline, the losses, or a trainer (train_tokenizer, train_var, finetune_…)."
    return module in TRAINING or module.startswith(("train_", "finetune"))


def training_imports(graph: dict) -> dict:
    "{model module: the training modules it reaches}, for the model modules that reach any."
    bad = {m: sorted(n for n in reachable(graph, m) if is_training(n)) for m in MODELS}
    return {m: ns for m, ns in bad.items() if ns}


def test_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layering_check_sees_what_it_must_refuse():
    "A model that imports a trainer, directly or through another module, is caught; a model above core is not."
    assert training_imports({"tokenizer": {"train"}, "hit": {"tokenizer"}, "quantize": {"core"}}) == \
        {"tokenizer": ["train"], "hit": ["train"]}
    assert training_imports({"var": {"helper"}, "helper": {"train_var"}}) == {"var": ["train_var"]}
    assert training_imports({"hit": {"core", "checkpoint"}, "checkpoint": {"core"}}) == {}


def test_layering_check_reads_imports_inside_functions(tmp_path):
    "An import hidden in a function body counts as much as one at the top of the module."
    (tmp_path / "core.py").write_text("import torch\n")
    (tmp_path / "train.py").write_text("from .core import torch\n")
    (tmp_path / "tokenizer.py").write_text("from .core import torch\n\ndef fit_me():\n    from msvar.train import fit\n")
    assert training_imports(_cs.import_graph(tmp_path)) == {"tokenizer": ["train"]}


def test_no_import_cycles():
    g = import_graph()
    assert {"core", "train", "train_var", "tokenizer", "hit"} <= set(g)
    assert cycles(g) == [], f"import cycles between msvar modules: {cycles(g)}"


def upward_imports(graph: dict, layer: dict = LAYER) -> list:
    "(module, imported module) pairs where the import does not go to a lower layer."
    return sorted((a, b) for a, bs in graph.items() for b in bs if layer[b] >= layer[a])


def test_layer_check_sees_an_upward_import():
    assert upward_imports({"core": {"hit"}, "hit": {"core"}}) == [("core", "hit")]
    assert upward_imports({"tokenizer": {"var"}}) == [("tokenizer", "var")]  # the same layer is not lower
    assert upward_imports({"reproduce": {"train", "core"}}) == []


def test_every_module_has_a_layer_and_imports_only_below_it():
    g = import_graph()
    assert set(g) == set(LAYER), f"modules without a layer: {set(g) - set(LAYER)}; gone: {set(LAYER) - set(g)}"
    bad = upward_imports(g)
    assert bad == [], f"imports that do not go down the stack: {bad}"


def imports_argparse(path: Path) -> bool:
    "Whether the module at `path` imports argparse anywhere (at the top or inside a function)."
    tree = ast.parse(path.read_text())
    plain = (a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names)
    froms = (n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0)
    return "argparse" in {*plain, *froms}


def argparse_outside_commands(pkg: Path) -> list:
    "Modules of `pkg` that import argparse but are neither msvar.cli, an msvar.cli_* module nor devtools."
    mods = sorted(p for p in pkg.glob("*.py") if p.name not in ("_modidx.py", "__init__.py"))
    allowed = lambda m: m == "cli" or m.startswith("cli_") or m == "devtools"
    return [p.stem for p in mods if imports_argparse(p) and not allowed(p.stem)]


def test_argparse_check_sees_a_parser_in_a_function(tmp_path):
    "An argparse import inside a library function is caught; the command modules may import it."
    (tmp_path / "var.py").write_text("def opts():\n    from argparse import ArgumentParser\n")
    (tmp_path / "cli_sr.py").write_text("import argparse\n")
    (tmp_path / "core.py").write_text("import os, argparse\n")
    assert argparse_outside_commands(tmp_path) == ["core", "var"]


def test_argparse_only_in_the_commands_layer():
    "argparse is imported only by msvar.cli, the msvar.cli_* modules and msvar.devtools."
    assert argparse_outside_commands(PKG) == [], "modules that parse options below the commands layer"


def test_models_import_no_training_code():
    "quantize, tokenizer, hit and var reach neither train, data, losses nor any trainer, at the top or in a function."
    g = import_graph()
    assert set(MODELS) <= set(g)
    assert training_imports(g) == {}, f"model modules import training code: {training_imports(g)}"


def test_generic_loop_sits_below_the_trainers():
    "msvar.train (the one training loop) imports no model module; the trainers import it."
    g = import_graph()
    assert not (g["train"] & set(MODELS)), g["train"]
    assert "train" in g["train_tokenizer"] and "train" in g["train_var"]


def test_inference_loads_no_training_code():
    "`import msvar.inference` (what loading a model for msvar_sr needs) loads no trainer, data pipeline or loss."
    code = ("import sys, msvar, msvar.inference; print(msvar.__file__); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('msvar.'))))")
    env = dict(os.environ, PYTHONPATH=str(PKG.parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=PKG.parent, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    where, loaded = out.stdout.splitlines()[-2], out.stdout.splitlines()[-1].split()
    assert Path(where).resolve().parent == PKG                        # the copy of the package under test
    assert "msvar.inference" in loaded and "msvar.hit" in loaded
    training = [m for m in loaded if is_training(m.split(".")[1])]
    assert training == [], f"import msvar.inference loaded {training}"
