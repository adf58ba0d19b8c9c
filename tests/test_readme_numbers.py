"""The README's numbers about the shipped model are the ones chapter 11's stored measurements hold (stale prose fails here)."""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_quotes_the_measured_model():
    "The README's paragraph on the shipped model is `model_card` of its stored measurement, at msvar_sr's default decoding and colour fix."
    from msvar.quality import load_quality, model_card
    from msvar.inference import SOFT_TAU, DEFAULT_OUTPUT
    readme = (REPO / "README.md").read_text()
    q = load_quality(REPO / "data" / "msvar_small_train" / "quality" / "ship.json")
    card = model_card(q, f"msvar [soft{SOFT_TAU:g}+fix{DEFAULT_OUTPUT.fix}]")
    assert card in readme, f"README.md does not quote the measured model: rerun nbs/index.ipynb and msvar_readme ({card[:120]}…)"
    log = [json.loads(l) for l in (REPO / "data" / "msvar_small_train" / "ship_log.jsonl").read_text().splitlines()]
    assert f"{log[-1]['step'] + 1} steps of 16 crops" in readme


def test_readme_findings_are_the_bundled_runs():
    "The README's findings table is what `findings_table` writes from the bundled run (data/repro_small), line for line."
    from msvar.reproduce import markdown_table, findings_table
    md = markdown_table(findings_table(REPO / "data" / "repro_small"))
    readme = (REPO / "README.md").read_text()
    missing = [l for l in md.splitlines() if l not in readme.splitlines()]
    assert not missing, f"README.md is stale: rerun nbs/index.ipynb and msvar_readme; lines missing: {missing[:2]}"


def test_readme_words_agree_with_the_verdicts():
    "The README's sentence on bicubic says what the bundled verdicts say, raw and with the colour fix."
    from msvar.reproduce import claims_table, results
    r = results(REPO / "data" / "repro_small")
    v = {d: claims_table(r["t1a"], r["per"], decoding=d).set_index(["claim", "metric", "scale"]).verdict
         for d in ("raw", "colour-fixed")}
    bic = lambda d, m: [v[d]["ours vs bicubic", m, s] for s in ("x1", "x2", "x4")]
    readme = (REPO / "README.md").read_text()
    assert "raw outputs lose in PSNR at every scale" in readme and bic("raw", "psnr") == ["b better"] * 3
    assert "win in LPIPS at every scale" in readme and bic("colour-fixed", "lpips") == ["a better"] * 3
    assert "do not beat bicubic in PSNR" in readme
    assert "a better" not in bic("colour-fixed", "psnr") + bic("colour-fixed", "psnr_rgb")
    assert "raw outputs lose in PSNR at every scale and win in LPIPS" in readme and bic("raw", "lpips")[1:] == ["a better"] * 2
    assert "β = 1 is worse than β = 0.1" in readme
    assert all(v[d]["β = 1 vs β = 0.1", "lpips", s] == "b better" for d in ("raw",) for s in ("x2", "x4"))
    assert "matches bicubic" not in readme and "match bicubic" not in readme


def test_readme_speed_is_the_stored_bench():
    "The README's speed line quotes data/bench/sr_speed.json, which bench/sr_speed.py --json writes."
    sp = json.loads((REPO / "data" / "bench" / "sr_speed.json").read_text())
    sec = {(r["threads"], r["width"], r["height"]): r["seconds"] for r in sp["rows"]}[1, 256, 192]
    readme = (REPO / "README.md").read_text()
    assert sp["cpu"] in readme and f"{sec['msvar_fp32']:.1f} s of CPU time in fp32" in readme, "rerun nbs/index.ipynb and msvar_readme"
    assert f"{sec['msvar_bf16']:.1f} s in bf16" in readme and f"{sec['rrdb_bf16']:.1f} s in bf16" in readme
    assert f"`msvar_sr`'s default on that CPU is {sp['default_precision']}" in readme


def test_readme_speed_on_two_cores_is_the_stored_bench():
    "The README's two-thread line quotes the stored bench's two-thread row."
    sp = json.loads((REPO / "data" / "bench" / "sr_speed.json").read_text())
    two = {(r["threads"], r["width"], r["height"]): r["seconds"] for r in sp["rows"]}[2, 256, 192]
    readme = (REPO / "README.md").read_text()
    ours = two[f"msvar_{sp['default_precision']}"]
    assert f"the photo takes {ours:.1f} s, RRDBNet {min(two['rrdb_fp32'], two['rrdb_bf16']):.1f} s" in readme
