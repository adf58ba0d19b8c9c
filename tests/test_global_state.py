"""No msvar function changes process-wide state behind the caller's back: importing every module and
calling every plotting / figure-saving helper on tiny inputs leaves the matplotlib backend, the Python, NumPy and
torch RNG states and the TF32 flags as they were; the training loop restores them when it returns."""
import importlib, json, pkgutil, random
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import msvar


def _state():
    "Everything a library function must leave alone."
    return dict(backend=matplotlib.get_backend(), python=random.getstate(), numpy=np.random.get_state()[1].copy(),
                torch=torch.get_rng_state().clone(), tf32=(torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))


def _assert_same(before, after):
    assert after["backend"] == before["backend"], f"the matplotlib backend changed: {before['backend']} → {after['backend']}"
    assert after["python"] == before["python"], "Python's global RNG state changed"
    assert (after["numpy"] == before["numpy"]).all(), "NumPy's global RNG state changed"
    assert torch.equal(after["torch"], before["torch"]), "torch's global RNG state changed"
    assert after["tf32"] == before["tf32"], "the TF32 flags changed"


@pytest.fixture
def svg_backend():
    "A backend other than Agg, so that a library call to matplotlib.use('Agg') shows; the old one comes back afterwards."
    old = matplotlib.get_backend()
    matplotlib.use("svg", force=True)
    yield
    import matplotlib.pyplot as plt
    plt.close("all"); matplotlib.use(old, force=True)


def test_modules_and_plotting_helpers_leave_global_state(svg_backend, tmp_path, monkeypatch):
    mods = sorted(m.name for m in pkgutil.iter_modules(msvar.__path__))
    for m in mods: importlib.import_module(f"msvar.{m}")
    from msvar.core import get_preset, show_images
    from msvar.tokenizer import Tokenizer
    from msvar.hit import HITTokenizer
    from msvar.var import SRVAR
    from msvar.train import plot_metrics
    from msvar.inference import SRModel, compare_figure, OutputSettings
    from msvar.cli_sr import sr_files
    from msvar.files import save_image
    import msvar.evaluate as ev, msvar.reproduce as rp
    p = get_preset("test")
    torch.manual_seed(0)                                               # model construction draws from the global RNG: before the snapshot
    model = SRModel(HITTokenizer(Tokenizer.from_preset(p), p), SRVAR.from_preset(p)).eval()
    g = torch.Generator().manual_seed(0)
    lr, hr = torch.rand(1, 3, p.lr_size, p.lr_size, generator=g), torch.rand(1, 3, p.hr_size, p.hr_size, generator=g)
    save_image(torch.cat([lr[0], lr[0]], -1), tmp_path / "in" / "a.png")  # two tiles: the test preset's 1×1 stage-1 latent needs a batch > 1
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(dict(step=s, phase=1 + s // 3, loss=1.0 / (s + 1), lr=1e-3)) + "\n" for s in range(6)))
    hist = [dict(step=s, loss=1.0, l2=0.5, lpips=0.3, vq=0.1, usage=[50.0] * p.L) for s in range(3)]
    outs = {"bicubic": [torch.rand(1, 3, s, s, generator=g) for s in p.stage_sizes],
            "msvar": [torch.rand(1, 3, s, s, generator=g) for s in p.stage_sizes]}
    res = dict(per_image=pd.DataFrame(dict(image=[0], psnr=[20.0])), summary=pd.DataFrame(dict(psnr=[20.0])), outputs=outs, n=1)
    plan = rp.ReproPlan(preset="test", tok_steps=1, tok_batch=1, hit_steps1=1, hit_steps2=1, hit_batch=1, var_steps=1, var_batch=1)
    scores = dict(image=["a", "b"] * 2, scale="x1", psnr=[20.0, 21, 22, 24], psnr_rgb=[19.0, 20, 21, 23], ssim=float("nan"),
                  lpips=[0.3, 0.2, 0.25, 0.1], delta_e=[5.0, 4, 4, 3])
    fake = dict(t1a=pd.DataFrame(dict(scores, method=["hit-base"] * 2 + ["hit"] * 2)),
                per=pd.DataFrame(dict(scores, method=["baseline"] * 2 + ["ours"] * 2, test_set="S", seed=0,
                                      decoding="raw")))
    monkeypatch.setattr(rp, "results", lambda out: fake)

    before = _state()
    figs = [show_images([lr[0], hr[0]], ["lr", "hr"]), plot_metrics(hist, keys=("loss", "l2")), plot_metrics(hist, tmp_path / "h.png", keys=("loss", "l2")),
            plot_metrics(tmp_path / "log.jsonl", tmp_path / "l.png", by="phase"), plot_metrics(tmp_path / "log.jsonl", tmp_path / "m.png"),
            compare_figure(lr[0], {1: lr[0], 4: hr[0]}), ev.comparison_grid(dict(lr=lr, hr=hr), outs, p)]
    ev.write_report(res, dict(lr=lr, hr=hr), p, tmp_path / "eval")
    sr_files([tmp_path / "in"], tmp_path / "sr", model, OutputSettings(scales=(1, 4)), compare=True, progress=False)
    rp.write_report(tmp_path / "run", plan)
    _assert_same(before, _state())
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    for f in ("h.png", "l.png", "m.png", "eval/grid.png", "sr/a_compare.png", "run/report.md"):
        assert (tmp_path / f).stat().st_size > 0, f


def test_fit_restores_the_callers_rng(tmp_path):
    "fit seeds the global RNGs for its own run (initial draws, class dropout); the caller's states come back."
    from msvar.train import fit, FitConfig
    m = nn.Linear(2, 1)
    batch = lambda s: [dict(x=torch.ones(4, 2), y=torch.zeros(4, 1))]
    def loss(net, b):
        l = ((net(b["x"]) - b["y"]) ** 2).mean()
        return l, dict(loss=l.item())
    random.seed(5); np.random.seed(5); torch.manual_seed(5)
    before = _state()
    fit(m, loss, batch, FitConfig(steps=2, progress=False, ckpt_every=2), tmp_path / "fit")
    _assert_same(before, _state())
