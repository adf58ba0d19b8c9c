"""The README's numbers about the shipped model are the ones chapter 11's stored measurements hold (stale prose fails here)."""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_quotes_the_measured_model():
    readme = (REPO / "README.md").read_text()
    q = json.loads((REPO / "data" / "msvar_small_train" / "quality" / "ship.json").read_text())
    t = {r["method"]: r for r in q["table"]}
    m, b, c = t["msvar [greedy]"], t["bicubic"], t["tokenizer ceiling"]
    quotes = [f"{b['psnr_x4'] - m['psnr_x4']:.2f} dB below bicubic in PSNR ({m['psnr_x4']:.2f} vs {b['psnr_x4']:.2f} dB)",
              f"{m['lpips_x4'] / b['lpips_x4']:.2f} × bicubic's LPIPS ({m['lpips_x4']:.3f} vs {b['lpips_x4']:.3f})",
              f"{b['psnr_x2'] - m['psnr_x2']:.2f} dB below ({m['psnr_x2']:.2f} vs {b['psnr_x2']:.2f})",
              f"{m['lpips_x2'] / b['lpips_x2']:.2f} × its LPIPS",
              f"({m['psnr_x1']:.2f} vs {b['psnr_x1']:.2f} dB)", f"its own ceiling there is {c['psnr_x1']:.2f} dB"]
    missing = [s for s in quotes if s not in readme]
    assert not missing, f"README.md does not quote the measured numbers: {missing}"
    log = [json.loads(l) for l in (REPO / "data" / "msvar_small_train" / "ship_log.jsonl").read_text().splitlines()]
    assert f"{log[-1]['step'] + 1} steps of 16 crops" in readme


def test_readme_findings_are_the_bundled_runs():
    "The README's reproduction findings are what `findings` writes from the bundled run of record (data/repro_small)."
    import pandas as pd
    from msvar.reproduce import results_tables, findings
    d = REPO / "data" / "repro_small"
    md = findings(results_tables(d), pd.read_csv(d / "prefix_use.csv", index_col=0))
    readme = (REPO / "README.md").read_text()
    missing = [l for l in md.splitlines() if l not in readme]
    assert not missing, f"README.md is stale: rerun nbs/index.ipynb and msvar_readme; lines missing: {missing[:2]}"
