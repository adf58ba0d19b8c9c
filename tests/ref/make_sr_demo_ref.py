"""Writes tests/ref/sr_demo.json: what `msvar_sr data/demo/lr` (shipped model, its default decoding and input fix) writes, as a sha256 of
each output's pixels plus a 15×15 block-mean thumbnail. tests/test_sr_outputs.py checks a fresh run against it, so a
refactor that changes the model's outputs fails. Rerun this only when the model's outputs are *meant* to change:

    python tests/ref/make_sr_demo_ref.py
"""
import hashlib, json, sys, tempfile
from pathlib import Path
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
REF = Path(__file__).with_name("sr_demo.json")

def fingerprint(path: Path) -> dict:
    "sha256 of the decoded RGB pixels and a 15×15 block-mean thumbnail (grey levels, 0.01 precision)."
    a = np.asarray(Image.open(path).convert("RGB"))
    h, w, _ = a.shape
    th = a[: h - h % 15, : w - w % 15].reshape(15, h // 15, 15, w // 15, 3).mean(axis=(1, 3))
    return dict(shape=list(a.shape), sha256=hashlib.sha256(a.tobytes()).hexdigest(), thumb=np.round(th, 2).tolist())

def run_demo(out: Path) -> dict:
    "Run msvar_sr on the bundled demo inputs into `out`; returns {output name: fingerprint}."
    from msvar.cli_sr import sr_cli
    try: sr_cli([str(REPO / "data" / "demo" / "lr"), "-o", str(out)])
    except SystemExit as e:
        if e.code: raise
    return {p.name: fingerprint(p) for p in sorted(out.glob("*.png"))}

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d: fp = run_demo(Path(d) / "out")
    REF.write_text(json.dumps(fp))
    print(f"wrote {REF} ({len(fp)} outputs)", file=sys.stderr)
