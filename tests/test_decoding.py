"Soft decoding (chapter 05) through the SR model, and the decoding that msvar_sr / msvar_eval choose from their options."
import argparse, json
import pytest, torch
from msvar.core import MsvarError
from msvar.inference import SOFT_TAU, decoding, add_decoding_args, save_sr_model, sr_cli


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
    assert decoding(_parse(argv)) == want

def test_decoding_refuses_two_choices():
    with pytest.raises(MsvarError, match="choose one decoding"): decoding(_parse(["--greedy", "--top-p", "0.9"]))


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
