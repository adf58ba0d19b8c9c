"""The GPU path, decided on the CPU: metric networks on the evaluation device, bf16 only where native, resume through the
CPU, and the memory plan that chooses gradient accumulation. Devices are faked (a `meta` parameter, a mocked CUDA query)."""
import pytest, torch
from torch import nn

import msvar.hit, msvar.lpips, msvar.metrics
from msvar.core import get_preset

P = get_preset("test")


class MetaModel(nn.Module):
    "Stands for a model on a GPU: its one parameter lives on the `meta` device; its outputs are CPU images of the stage sizes."
    preset = P
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, device="meta"))
    def sr_batch(self, lr, cls=0, generator=None, **decode): return [torch.rand(len(lr), 3, s, s) for s in P.stage_sizes]


@pytest.fixture
def metric_spy(monkeypatch):
    "Records where each metric network is built and how many image sets the Inception network sees."
    rec = dict(devices=[], fid_calls=0)
    def get_lpips(net="alex", device=None):
        rec["devices"].append(("lpips", device))
        return "alex"
    class FakeInception:
        dims = 2048
        def __init__(self, path=None, device=None): rec["devices"].append(("fid", device))
        def __call__(self, images, batch_size=16):
            rec["fid_calls"] += 1
            return torch.randn(len(images), 8, dtype=torch.float64)
    monkeypatch.setattr(msvar.lpips, "get_lpips", get_lpips)
    monkeypatch.setattr(msvar.metrics, "lpips_distance", lambda a, b, net="alex", **kw: torch.zeros(len(a), dtype=torch.float64))
    monkeypatch.setattr(msvar.metrics, "FIDFeatures", FakeInception)
    return rec


def test_evaluation_metrics_on_the_model_device(metric_spy):
    from msvar.evaluate import evaluate_model
    n = 4
    pairs = dict(hr=torch.rand(n, 3, P.hr_size, P.hr_size), lr=torch.rand(n, 3, P.lr_size, P.lr_size), cls=torch.zeros(n, dtype=torch.long))
    with pytest.warns(UserWarning, match="biased"):
        res = evaluate_model(MetaModel(), pairs, fid_min=2)
    meta = torch.device("meta")
    assert metric_spy["devices"] == [("lpips", meta), ("fid", meta)]
    scales, methods = len(P.stages), 3                                 # bicubic, bilinear, the model
    assert len(res["fid"]) == methods * scales
    assert metric_spy["fid_calls"] == methods * scales + scales        # each target's features once, not once per method


def test_scale_metrics_on_the_model_device(metric_spy, monkeypatch):
    seen = []
    def reconstruct(model, x, mode):
        seen.append(x.device)
        return [torch.rand(len(x), 3, s, s) for s in P.stage_sizes]
    monkeypatch.setattr(msvar.hit, "reconstruct_scales", reconstruct)
    msvar.hit.scale_metrics(MetaModel(), torch.rand(2, 3, P.hr_size, P.hr_size), modes=("hit",))
    assert metric_spy["devices"] == [("lpips", torch.device("meta"))]
    assert seen == [torch.device("meta")]
