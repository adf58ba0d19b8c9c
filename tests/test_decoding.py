"""Soft decoding (chapter 05) through the SR model; the one `Decoding` and the one `OutputSettings` that msvar_sr,
msvar_eval, evaluate_model and the Python API share, with one default each."""
import argparse, json
from dataclasses import replace
import pytest, torch
from msvar.core import MsvarError
from msvar.inference import SOFT_TAU, save_sr_model, load_sr_model, OutputSettings, DEFAULT_OUTPUT, DEFAULT_CLASS
from msvar.var import Decoding, DEFAULT_DECODING
from msvar.cli_sr import sr_cli, eval_cli, add_decoding_args, decoding_from_args, _sr_parser, _eval_parser
from msvar.cli_sr import output_from_args

GREEDY = Decoding("greedy")

# `toy`, a random `test`-preset model: tests/conftest.py


def test_soft_decoding_tends_to_greedy_on_hit_stage_grids(toy):
    "On HIT's stage grids, soft decoding at τ → 0 gives greedy decoding's images; at τ = 1 it gives other images."
    lr = torch.rand(3, 3, toy.preset.lr_size, toy.preset.lr_size, generator=torch.Generator().manual_seed(1))
    greedy = toy.sr_batch(lr, decoding=GREEDY)
    cold, warm = toy.sr_batch(lr, decoding=Decoding(tau=1e-5)), toy.sr_batch(lr, decoding=Decoding(tau=1.0))
    assert [g.shape for g in greedy] == [c.shape for c in cold]
    for g, c in zip(greedy, cold): torch.testing.assert_close(c, g, atol=1e-4, rtol=0)
    assert max((w - g).abs().max().item() for w, g in zip(warm, greedy)) > 1e-3


def test_soft_decoding_excludes_other_choices():
    with pytest.raises(MsvarError, match="excludes"): Decoding("soft", top_k=5)
    with pytest.raises(MsvarError, match="τ > 0"): Decoding("soft", tau=float("nan"))


def _parse(argv):
    ap = argparse.ArgumentParser(); add_decoding_args(ap); ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)

@pytest.mark.parametrize("argv, want", [([], Decoding("soft", tau=SOFT_TAU)), (["--soft", "0.7"], Decoding(tau=0.7)),
                                        (["--greedy"], GREEDY), (["--sample"], Decoding("sample")),
                                        (["--top-k", "5"], Decoding("sample", top_k=5))])
def test_decoding_from_options(argv, want):
    assert decoding_from_args(_parse(argv)) == want

def test_decoding_refuses_two_choices():
    with pytest.raises(MsvarError, match="choose one decoding"): decoding_from_args(_parse(["--greedy", "--top-p", "0.9"]))


def test_msvar_sr_decodes_softly_by_default_and_says_so(tmp_path, toy):
    from PIL import Image
    (tmp_path / "in").mkdir(); Image.new("RGB", (10, 12), (90, 140, 30)).save(tmp_path / "in" / "a.png")
    model = save_sr_model(toy, tmp_path / "toy.safetensors")
    summaries = {}
    for name, extra in (("soft", []), ("greedy", ["--greedy"])):
        try: sr_cli([str(tmp_path / "in"), "-o", str(tmp_path / name), "--model", str(model), "--scales", "2"] + extra)
        except SystemExit as e: assert not e.code
        summaries[name] = json.loads(next((tmp_path / name).glob("msvar_sr_summary_*.json")).read_text())["options"]
    assert summaries["soft"]["mode"] == "soft" and summaries["soft"]["tau"] == SOFT_TAU
    assert summaries["greedy"]["mode"] == "greedy" and summaries["greedy"]["decoding"] == "greedy"
    assert summaries["soft"]["fix"] == DEFAULT_OUTPUT.fix == "auto" and summaries["soft"]["cls"] == 1


def test_options_name_their_flag():
    with pytest.raises(MsvarError, match="--soft must be"): decoding_from_args(_parse(["--soft", "1e-40"]))
    with pytest.raises(MsvarError, match="--cfg must be"): decoding_from_args(_parse(["--cfg", "nan"]))
    d = decoding_from_args(_parse(["--top-p", "0.9", "--cfg", "2"]))
    assert d == Decoding("sample", top_p=0.9, cfg=2.0) and str(d) == "sample+topp0.9+cfg2"
    bad = _sr_parser().parse_args(["x", "-o", "o", "--fix", "sharp"])
    with pytest.raises(MsvarError, match="^--fix must be one of"): output_from_args(bad)


def test_a_model_files_decoding_is_the_base_of_the_options():
    assert decoding_from_args(_parse(["--cfg", "1"]), GREEDY) == Decoding("greedy", cfg=1.0)
    assert decoding_from_args(_parse(["--soft", "0.5"]), GREEDY) == Decoding("soft", tau=0.5)


@pytest.mark.parametrize("text, d", [("greedy", GREEDY), ("sample", Decoding("sample")),
                                     ("soft1.5+cfg1", Decoding("soft", tau=1.5, cfg=1.0)),
                                     ("topk50+cfg1.5", Decoding("sample", top_k=50, cfg=1.5)),
                                     ("topp0.9", Decoding("sample", top_p=0.9))])
def test_strings_parse(text, d):
    assert Decoding.parse(text) == d and Decoding.parse(str(d)) == d


def test_no_legacy_keywords(toy):
    "The keywords that chose a decoding before (greedy=, soft=, top_k=) are gone: one typed value per thing."
    lr = torch.rand(1, 3, toy.preset.lr_size, toy.preset.lr_size)
    with pytest.raises(TypeError): toy.sr_batch(lr, greedy=True)
    with pytest.raises(TypeError): toy.var.generate(None, None, None, soft=1.0)
    assert not hasattr(Decoding, "of") and not hasattr(Decoding, "from_args")


def test_one_default_at_every_entry_point(tmp_path, toy):
    "Told nothing, msvar_sr, msvar_eval, the model file, the Python API and evaluate_model decode and write alike."
    import inspect
    from msvar.api import Upscaler
    from msvar.evaluate import evaluate_model, model_outputs
    from msvar.inference import upscale
    from msvar.cli_sr import sr_files
    assert DEFAULT_DECODING == Decoding("soft", tau=SOFT_TAU) and Decoding() == DEFAULT_DECODING
    assert DEFAULT_OUTPUT.cls == DEFAULT_CLASS == 1 and DEFAULT_OUTPUT.fix == "auto"
    sr, ev = _sr_parser().parse_args(["x", "-o", "o"]), _eval_parser().parse_args(["--out", "o"])
    assert decoding_from_args(sr) == decoding_from_args(ev) == DEFAULT_DECODING
    assert output_from_args(sr) == DEFAULT_OUTPUT
    ev_out = output_from_args(ev)
    assert (ev_out.cls, ev_out.fix) == (DEFAULT_OUTPUT.cls, DEFAULT_OUTPUT.fix)
    assert load_sr_model(save_sr_model(toy, tmp_path / "toy.safetensors")).decoding == DEFAULT_DECODING
    assert Upscaler(toy).decoding == DEFAULT_DECODING
    for f in (upscale, sr_files, model_outputs, evaluate_model, Upscaler.upscale):
        assert inspect.signature(f).parameters["output"].default is DEFAULT_OUTPUT, f
    lr = torch.rand(2, 3, toy.preset.lr_size, toy.preset.lr_size, generator=torch.Generator().manual_seed(2))
    assert torch.equal(toy.sr_batch(lr)[2], toy.sr_batch(lr, decoding=DEFAULT_DECODING)[2])
    by_upscale = upscale(lr[0], toy, replace(DEFAULT_OUTPUT, scales=(1, 2, 4)))
    for ours, theirs in zip(model_outputs(toy, lr[:1]), by_upscale.values()):
        torch.testing.assert_close(ours[0], theirs, atol=2e-6, rtol=0)  # the same images, colour fix included


def test_every_entry_point_takes_class_two(tmp_path, toy):
    "The class-free null class (2), on which the VAR is trained with probability cond_drop, is allowed at inference."
    from msvar.api import Upscaler
    from msvar.inference import upscale
    x = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(4))
    c2 = OutputSettings(cls=2)
    assert not torch.equal(upscale(x, toy, c2)[4], upscale(x, toy)[4])
    assert Upscaler(toy).upscale(x, c2)[4].size == (48, 40)
    model = save_sr_model(toy, tmp_path / "toy.safetensors")
    save = torch.rand(3, 10, 12)
    from msvar.files import save_image
    save_image(save, tmp_path / "in" / "a.png")
    try: sr_cli([str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--model", str(model), "--class", "2"])
    except SystemExit as e: assert not e.code
    assert (tmp_path / "o" / "a_x4.png").exists()
    with pytest.raises(MsvarError, match="cls must be one of"): OutputSettings(cls=3)


def test_msvar_eval_scores_what_msvar_sr_writes(tmp_path):
    "msvar_eval's PSNR of the shipped model equals the PSNR of the files msvar_sr writes for the same LR crops."
    import pandas as pd
    from msvar.core import data_dir, resize
    from msvar.files import save_image, load_image
    from msvar.hit import center_crops, stage_image
    from msvar.inference import default_model_path
    from msvar.metrics import psnr
    p = load_sr_model(default_model_path()).preset
    for f in sorted((data_dir() / "test" / "Set5").glob("*.png"))[:2]:
        hr = center_crops([f], p.hr_size)[0]
        save_image(hr, tmp_path / "pairs" / "hr" / f.name)
        save_image(resize(hr, p.lr_size, "bicubic").clamp(0, 1), tmp_path / "pairs" / "lr" / f.name)
    sr_cli([str(tmp_path / "pairs" / "lr"), "-o", str(tmp_path / "sr"), "--scales", "1", "2", "4"])
    with pytest.raises(SystemExit) as e:
        eval_cli(["--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "ev")])
        raise SystemExit(0)
    assert not e.value.code
    per = pd.read_csv(tmp_path / "ev" / "per_image.csv")
    for n, s in enumerate((1, 2, 4)):
        rows = per[(per.method == "msvar") & (per.scale == f"x{s}")]
        for name, got in zip(rows.image, rows.psnr_rgb):
            y = load_image(tmp_path / "sr" / f"{name[:-4]}_x{s}.png")[None]
            t = stage_image(load_image(tmp_path / "pairs" / "hr" / name)[None], p, n)
            files = psnr(y, t, y_channel=False).item()
            assert files == got or abs(files - got) < 0.05, (name, s)  # inf: a clean input's ×1 is the input
