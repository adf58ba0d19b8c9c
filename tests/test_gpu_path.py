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


# ---------------------------------------------------------------- precision and resume
def test_auto_precision_bf16_only_where_native(monkeypatch):
    from msvar.train import resolve_precision
    native = {"v": False}
    def is_bf16_supported(including_emulation=True): return native["v"] or including_emulation   # a V100 / T4: emulated only
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_precision("auto", "cuda") == "fp32"
    native["v"] = True                                                  # an A100 / H100
    assert resolve_precision("auto", "cuda:0") == "bf16"
    assert resolve_precision("fp16", "cuda") == "fp16"


def test_resume_loads_the_checkpoint_to_the_cpu(tmp_path, monkeypatch):
    "Loading to the CPU first leaves AdamW's step counters there when the model is on a GPU (no host sync per parameter)."
    from msvar import train
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    def loss_fn(model, batch):
        loss = nn.functional.mse_loss(model(batch[0]), batch[1])
        return loss, {}
    cfg = train.FitConfig(steps=2, ckpt_every=2, progress=False, warmup=0)
    torch.manual_seed(0)
    train.fit(nn.Linear(4, 2), loss_fn, lambda step: (x, y), cfg, tmp_path)
    seen, load = [], train.load_checkpoint
    def spy(path, map_location="cpu", **kw):
        seen.append(torch.device(map_location))
        return load(path, map_location=map_location, **kw)
    monkeypatch.setattr(train, "load_checkpoint", spy)
    run = train.start_run(nn.Linear(4, 2), cfg, tmp_path)
    monkeypatch.setattr(train.Run, "device", property(lambda self: torch.device("meta")))   # where a GPU run's model would be
    train.resume_run(run, True)
    assert seen == [torch.device("cpu")]
    assert run.step == 2 and all(st["step"].device.type == "cpu" for st in run.opt.state.values())


# ---------------------------------------------------------------- the memory plan
def test_saved_tensor_count_matches_a_real_step():
    "The fake-tensor count equals the bytes a real CPU step saves for backward (test preset, bf16 autocast, CE + DPO)."
    from msvar.train_var import saved_tensor_bytes
    from msvar.var import SRVAR
    from msvar.losses import token_ce, sequence_logprob, dpo_loss
    B, n, first, Cv = 2, P.n_image_tokens, P.patch_nums[0] ** 2, P.tokenizer.z_channels
    m = SRVAR.from_preset(P).train()
    saved = {}
    def pack(t):
        saved[id(t)] = t.numel() * t.element_size()
        return t
    z = torch.randint(0, P.tokenizer.vocab_size, (B, n))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = m(torch.randn(B, Cv, P.latent_side, P.latent_side), torch.zeros(B, dtype=torch.long), torch.randn(B, n - first, Cv))
        loss = token_ce(logits, z) + dpo_loss(sequence_logprob(logits, z), sequence_logprob(logits, z))
    fake, n_params = saved_tensor_bytes(P, B, "bf16")
    assert fake == sum(saved.values()) and n_params == sum(q.numel() for q in m.parameters())
    assert saved_tensor_bytes(P, B, "fp32")[0] > fake


def test_memory_plan_fits_the_paper_batch(monkeypatch):
    "The paper's global batch of 384 on 8 GPUs of 80 GB: one micro-batch of 48 does not fit; the default --accum is the fewest that does."
    from types import SimpleNamespace
    from msvar.train_var import VarTrainConfig, resolve_accum, GPU_MEMORY_USE
    assert VarTrainConfig().accum is None                              # not given: planned
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: SimpleNamespace(total_memory=80e9))
    accum, plan = resolve_accum(None, "paper", 384, 8, "cuda:0", "bf16")
    assert plan.accum == accum > 1 and plan.gpu_bytes == 80e9
    assert not plan.fits(1) and plan.fits(accum) and plan.need(accum) <= GPU_MEMORY_USE * 80e9
    smaller = [a for a in range(1, accum) if 48 % a == 0]
    assert not any(plan.fits(a) for a in smaller)                       # the fewest micro-batches that fit
    assert plan.per_image > 2**31                                       # GiBs per image: the activations are what does not fit
    assert resolve_accum(None, "paper", 384, 8, "cpu", "bf16") == (1, None)
    assert resolve_accum(3, "paper", 384, 8, "cuda:0", "bf16") == (3, None)


# ---------------------------------------------------------------- the training folder: headers once, cache when it fits
def _images(tmp_path, n=3, side=40):
    from PIL import Image
    for i in range(n): Image.new("RGB", (side, side + i), (i, 2 * i, 3 * i)).save(tmp_path / f"im{i}.png")
    return tmp_path


def test_scan_once_reads_headers_on_rank_0_only(tmp_path, monkeypatch):
    from types import SimpleNamespace
    import msvar.data, msvar.train_var as tv
    root = _images(tmp_path)
    decodes = []
    real_load = msvar.data.load_image
    monkeypatch.setattr(msvar.data, "load_image", lambda f, *a, **k: decodes.append(f) or real_load(f, *a, **k))
    scan = tv.scan_once(root, SimpleNamespace(is_main=True, world_size=1))
    assert [s for _, s in scan[0]] == [(40, 40), (40, 41), (40, 42)] and decodes == []   # headers only
    ds = msvar.data.HRFolder(root, 32, scan=scan)
    assert len(ds) == 3 and decodes == []                                                   # nothing decoded before step 1
    # another rank: no scan of its own, the main process's list arrives by broadcast
    monkeypatch.setattr(tv, "scan_images", lambda *a, **k: pytest.fail("a second process scanned the folder"))
    def broadcast(box, src=0): box[0] = scan
    monkeypatch.setattr(tv.dist, "broadcast_object_list", broadcast)
    assert tv.scan_once(root, SimpleNamespace(is_main=False, world_size=2)) is scan


def test_image_cache_only_when_it_fits(tmp_path, monkeypatch):
    import msvar.data
    root = _images(tmp_path)
    total = sum(3 * 40 * (40 + i) for i in range(3))
    monkeypatch.setattr(msvar.data, "CACHE_MAX_BYTES", total)
    assert msvar.data.HRFolder(root, 32, cache="auto")._cache is not None
    monkeypatch.setattr(msvar.data, "CACHE_MAX_BYTES", total - 1)
    assert msvar.data.HRFolder(root, 32, cache="auto")._cache is None
    assert msvar.data.HRFolder(root, 32, cache=True)._cache is not None
    with pytest.raises(msvar.data.MsvarError, match="cache"): msvar.data.HRFolder(root, 32, cache="yes")


def test_trainers_cache_only_when_it_fits():
    "The tokenizer and HIT trainers ask for the cache only when the folder fits (they cached every folder whole)."
    import inspect, msvar.train_tokenizer as tt
    for f in (tt.train_tokenizer, tt.finetune_hit):
        assert 'cache="auto"' in inspect.getsource(f) and "cache=True" not in inspect.getsource(f)


def test_ddp_does_not_broadcast_the_attention_mask(tmp_path):
    "DDP re-sends every buffer from rank 0 at each forward; the VAR's constant block-causal mask (20 MB for the paper preset) is left out."
    import dataclasses
    import torch.distributed as dist
    from msvar import train
    from msvar.var import SRVAR
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        run = train.start_run(SRVAR.from_preset(P), train.FitConfig(steps=1, progress=False), tmp_path)
        run.env = dataclasses.replace(run.env, world_size=2)            # wrap_model wraps in DDP when several processes run
        train.wrap_model(run)
        assert isinstance(run.net, nn.parallel.DistributedDataParallel)
        sent = list(run.net.named_module_buffers)
        assert sent and not any(n.endswith("attn_mask") for n in sent)
    finally:
        dist.destroy_process_group()
