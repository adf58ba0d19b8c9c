"""The README's numbers about the shipped model are the ones chapter 11's stored measurements hold (stale prose fails here)."""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_quotes_the_measured_model():
    "The README's paragraph on the shipped model is `model_card` of its stored measurement, at msvar_sr's default decoding and colour fix."
    from msvar.quality import load_quality, model_card
    from msvar.inference import SOFT_TAU, COLOUR_SIGMA
    readme = (REPO / "README.md").read_text()
    q = load_quality(REPO / "data" / "msvar_small_train" / "quality" / "ship.json")
    card = model_card(q, f"msvar [soft{SOFT_TAU:g}+colour{COLOUR_SIGMA:g}]")
    assert card in readme, f"README.md does not quote the measured model: rerun nbs/index.ipynb and msvar_readme ({card[:120]}…)"
    log = [json.loads(l) for l in (REPO / "data" / "msvar_small_train" / "ship_log.jsonl").read_text().splitlines()]
    assert f"{log[-1]['step'] + 1} steps of 16 crops" in readme


def test_readme_findings_are_the_bundled_runs():
    "The README's reproduction verdicts are what `run_findings` writes from the bundled run of record (data/repro_small)."
    from msvar.reproduce import run_findings
    md = run_findings(REPO / "data" / "repro_small")
    readme = (REPO / "README.md").read_text()
    missing = [l for l in md.splitlines() if l not in readme]
    assert not missing, f"README.md is stale: rerun nbs/index.ipynb and msvar_readme; lines missing: {missing[:2]}"
