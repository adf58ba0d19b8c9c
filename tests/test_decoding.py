"""Soft decoding (chapter 05) through the SR model; the one `Decoding` value that msvar_sr / msvar_eval and the Python
functions share."""
import argparse, json
import pytest, torch
from msvar.core import MsvarError
from msvar.inference import SOFT_TAU, save_sr_model, load_sr_model, sr_cli
from msvar.var import Decoding, DEFAULT_DECODING, add_decoding_args


# `toy`, a random `test`-preset model: tests/conftest.py


def test_soft_decoding_tends_to_greedy_on_hit_stage_grids(toy):
    "On HIT's stage grids, soft decoding at τ → 0 gives greedy decoding's images; at τ = 1 it gives other images."
    lr = torch.rand(3, 3, toy.preset.lr_size, toy.preset.lr_size, generator=torch.Generator().manual_seed(1))
    greedy = toy.sr_batch(lr, greedy=True)
    cold, warm = toy.sr_batch(lr, soft=1e-5), toy.sr_batch(lr, soft=1.0)
    assert [g.shape for g in greedy] == [c.shape for c in cold]
    for g, c in zip(greedy, cold): torch.testing.assert_close(c, g, atol=1e-4, rtol=0)
    assert max((w - g).abs().max().item() for w, g in zip(warm, greedy)) > 1e-3


def test_soft_decoding_excludes_other_choices(toy):
    lr = torch.rand(1, 3, toy.preset.lr_size, toy.preset.lr_size)
    with pytest.raises(MsvarError, match="excludes"): toy.sr_batch(lr, soft=1.0, top_k=5)
    with pytest.raises(MsvarError, match="τ > 0"): toy.sr_batch(lr, soft=float("nan"))


def _parse(argv):
    ap = argparse.ArgumentParser(); add_decoding_args(ap); return ap.parse_args(argv)

@pytest.mark.parametrize("argv, want", [([], dict(greedy=False, soft=SOFT_TAU)), (["--soft", "0.7"], dict(greedy=False, soft=0.7)),
                                        (["--greedy"], dict(greedy=True)), (["--sample"], dict(greedy=False, top_k=0, top_p=0.0)),
                                        (["--top-k", "5"], dict(greedy=False, top_k=5, top_p=0.0))])
def test_decoding_from_options(argv, want):
    assert Decoding.from_args(_parse(argv)).choice() == want

def test_decoding_refuses_two_choices():
    with pytest.raises(MsvarError, match="choose one decoding"):
        Decoding.from_args(_parse(["--greedy", "--top-p", "0.9"]))


def test_msvar_sr_decodes_softly_by_default_and_says_so(tmp_path, toy):
    from PIL import Image
    (tmp_path / "in").mkdir(); Image.new("RGB", (10, 12), (90, 140, 30)).save(tmp_path / "in" / "a.png")
    model = save_sr_model(toy, tmp_path / "toy.pt")
    summaries = {}
    for name, extra in (("soft", []), ("greedy", ["--greedy"])):
        try: sr_cli([str(tmp_path / "in"), "-o", str(tmp_path / name), "--model", str(model), "--scales", "2"] + extra)
        except SystemExit as e: assert not e.code
        summaries[name] = json.loads(next((tmp_path / name).glob("msvar_sr_summary_*.json")).read_text())["options"]
    assert summaries["soft"]["soft"] == SOFT_TAU and not summaries["soft"]["greedy"]
    assert summaries["greedy"] == {**summaries["greedy"], "greedy": True} and "soft" not in summaries["greedy"]


def test_options_name_their_flag():
    with pytest.raises(MsvarError, match="--soft must be"): Decoding.from_args(_parse(["--soft", "1e-40"]))
    with pytest.raises(MsvarError, match="--cfg must be"): Decoding.from_args(_parse(["--cfg", "nan"]))
    d = Decoding.from_args(_parse(["--top-p", "0.9", "--cfg", "2"]))
    assert d == Decoding("sample", top_p=0.9, cfg=2.0) and str(d) == "sample+topp0.9+cfg2"


def test_a_model_files_decoding_is_the_base_of_the_options():
    base = Decoding("greedy")
    assert Decoding.from_args(_parse(["--cfg", "1"]), base) == Decoding("greedy", cfg=1.0)
    assert Decoding.from_args(_parse(["--soft", "0.5"]), base) == Decoding("soft", tau=0.5)


@pytest.mark.parametrize("old, new", [("greedy", Decoding("greedy")), ("sample", Decoding("sample")),
                                      ("soft1.5+cfg1", Decoding("soft", tau=1.5, cfg=1.0)),
                                      ("topk50+cfg1.5", Decoding("sample", top_k=50, cfg=1.5)),
                                      ("topp0.9", Decoding("sample", top_p=0.9))])
def test_old_strings_parse(old, new):
    assert Decoding.parse(old) == new and Decoding.parse(str(new)) == new


def test_one_default_at_every_entry_point(tmp_path, toy):
    "Told nothing, the commands, the model file, the Python API and every function down to `generate` decode alike."
    import inspect
    from msvar.api import Upscaler
    from msvar.evaluate import evaluate_model, model_outputs
    from msvar.inference import SRModel, upscale, sr_files
    from msvar.var import SRVAR
    assert DEFAULT_DECODING == Decoding("soft", tau=SOFT_TAU) and Decoding() == DEFAULT_DECODING
    assert Decoding.from_args(_parse([])) == DEFAULT_DECODING                       # msvar_sr, msvar_eval
    assert load_sr_model(save_sr_model(toy, tmp_path / "toy.pt")).decoding == DEFAULT_DECODING
    assert Upscaler(toy).decoding == DEFAULT_DECODING
    for f in (SRVAR.generate, SRModel.sr_batch, upscale, sr_files, model_outputs, evaluate_model):
        assert inspect.signature(f).parameters["decoding"].default is None, f  # None: DEFAULT_DECODING
    lr = torch.rand(2, 3, toy.preset.lr_size, toy.preset.lr_size, generator=torch.Generator().manual_seed(2))
    assert torch.equal(toy.sr_batch(lr)[2], toy.sr_batch(lr, decoding=DEFAULT_DECODING)[2])
    assert torch.equal(model_outputs(toy, lr, 0)[2], model_outputs(toy, lr, 0, decoding=str(DEFAULT_DECODING))[2])


def test_keywords_and_one_value_decode_alike(toy):
    lr = torch.rand(2, 3, toy.preset.lr_size, toy.preset.lr_size, generator=torch.Generator().manual_seed(3))
    g = lambda: torch.Generator().manual_seed(0)
    for kw, d in ((dict(greedy=True, cfg=1.0), "greedy+cfg1"), (dict(top_k=5), "topk5"), (dict(soft=0.5), "soft0.5")):
        assert torch.equal(toy.sr_batch(lr, generator=g(), **kw)[2], toy.sr_batch(lr, decoding=d, generator=g())[2]), kw
    with pytest.raises(MsvarError, match="not both"): toy.sr_batch(lr, decoding="greedy", soft=1.0)
