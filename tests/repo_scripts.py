"The repository's scripts (bench/, tests/ref/) loaded as modules: they are files to run, not a package to import."

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str):
    "The script at `relpath` (from the repository root), executed as a module named after its file."
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
