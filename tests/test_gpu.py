"""msvar on a CUDA GPU: what a GPU user runs first, checked against the CPU paths the notebooks test.

- teacher-forced logits on CUDA equal the CPU's (fp32, TF32 off, within rounding);
- a training step of `fit` in bf16 and in fp16 autocast (fp16 with the grad scaler) runs in that precision and lowers the loss;
- `torch.compile` of the VAR gives the eager logits;
- KV-cache sampling on CUDA equals teacher forcing (chapter 05's exactness check), with and without the cache, and seeded
  sampling with a CPU generator (what `msvar_sr` and `msvar_eval --sample` pass) runs on CUDA;
- a training checkpoint written on the GPU resumes on the CPU, and one written on the CPU resumes on the GPU.

Everything uses the `test` preset (and `small` for the logits), so the module takes seconds plus torch.compile's time.
Without CUDA the whole module is skipped; `python bench/gpu_check.py` runs it on a GPU machine and reports it.
"""
import math
import pytest
import torch
from msvar.core import get_preset, resize
from msvar.var import SRVAR, Decoding
from msvar.quantize import MultiScaleQuantizer, ScaleState

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU (torch.cuda.is_available() is False): these tests check msvar's CUDA paths")
CUDA = "cuda"


@pytest.fixture(autouse=True)
def exact_fp32():
    "fp32 means fp32: no TF32 matmuls while these tests compare CUDA with the CPU."
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def close(a, b, rtol=1e-4):
    "assert_close with an absolute tolerance scaled to the reference's magnitude (fp32 kernels differ in summation order)."
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * max(1.0, float(b.abs().max())))


def open_model(p, seed=0, **kw):
    "A VAR of preset p whose gates are open and whose logits are O(1), as in chapter 05's checks (VAR's init is nearly the identity)."
    torch.manual_seed(seed)
    m = SRVAR.from_preset(p, **kw).eval()
    with torch.no_grad():
        for b in m.blocks: b.ada_lin[1].bias[: 2 * m.C] = 1.0
        m.head.weight.normal_(0, 0.5)
    return m


def token_batch(p, dev, B=2, seed=0):
    "Random token maps, a stand-in state (codebook on `dev`), an LR prefix and classes."
    g = torch.Generator().manual_seed(seed)
    cb = torch.randn(p.tokenizer.vocab_size, p.tokenizer.z_channels, generator=g)
    idx = [torch.randint(0, p.tokenizer.vocab_size, (B, pn, pn), generator=g) for pn in p.patch_nums]
    prefix = torch.randn(B, p.tokenizer.z_channels, p.latent_side, p.latent_side, generator=g)
    cls = torch.tensor([0, 1] * (B // 2) + [0] * (B % 2))
    q = MultiScaleQuantizer(*cb.shape, p.patch_nums, quant_resi=0.0).to(dev)   # chapter 02's quantizer, φ = identity
    with torch.no_grad(): q.embedding.weight.copy_(cb)
    q.requires_grad_(False)                                                   # a fixed codebook
    st = ScaleState(q)
    return [i.to(dev) for i in idx], st, prefix.to(dev), cls.to(dev)


def image_batch(p, B=4, seed=0):
    "{'hr','lr','cls'}: smooth random HR images and their bicubic LR versions (a fixed batch to overfit)."
    g = torch.Generator().manual_seed(seed)
    hr = resize(torch.rand(B, 3, p.hr_size // 4, p.hr_size // 4, generator=g), p.hr_size, "bicubic").clamp(0, 1)
    return dict(hr=hr, lr=resize(hr, p.lr_size, "bicubic").clamp(0, 1), cls=torch.zeros(B, dtype=torch.long))


def random_hit(p, seed=0):
    from msvar.hit import HITTokenizer
    from msvar.tokenizer import Tokenizer
    torch.manual_seed(seed)
    return HITTokenizer(Tokenizer.from_preset(p), p)


@pytest.mark.parametrize("preset", ["test", "small"])
def test_logits_cuda_equal_cpu(preset):
    "Teacher-forced logits of the same weights and inputs on CUDA and on the CPU, fp32."
    p = get_preset(preset)
    m = open_model(p)
    idx, st, prefix, cls = token_batch(p, "cpu")
    x = st.q.teacher_inputs(idx)
    with torch.no_grad():
        ref = m(prefix, cls, x)
        out = m.to(CUDA)(prefix.to(CUDA), cls.to(CUDA), x.to(CUDA)).cpu()
    assert ref.abs().max() > 0.5                                          # O(1) logits, so the tolerance means something
    close(out, ref)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_training_step_lowers_loss(tmp_path, precision):
    "msvar.train.fit with autocast on CUDA (fp16: with the grad scaler): the VAR computes in that dtype and the loss on a fixed batch falls."
    from msvar.losses import SRLoss
    from msvar.train import FitConfig, fit, load_checkpoint
    p = get_preset("test")
    tok = random_hit(p)
    torch.manual_seed(0)
    m = SRVAR.from_preset(p, cond_drop=0.0).to(CUDA)
    seen = []
    m.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    batch = image_batch(p)
    cfg = FitConfig(steps=20, lr=3e-3, warmup=0, precision=precision, ckpt_every=20, progress=False)
    r = fit(m, SRLoss(tok), lambda step: batch, cfg, tmp_path / precision)
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert set(seen) == {want}, seen
    losses = [row["loss"] for row in r.rows]
    assert all(math.isfinite(l) for l in losses), losses
    assert sum(losses[-3:]) / 3 < losses[0] - 0.05, losses
    scaler = load_checkpoint(tmp_path / precision / "last.pt")["scaler"]
    assert bool(scaler) == (precision == "fp16")                           # the grad scaler is used (and saved) for fp16 only


def test_compiled_var_equals_eager():
    "torch.compile(SRVAR) gives the eager logits, in eval and in training mode (no class dropout)."
    p = get_preset("test")
    m = open_model(p, cond_drop=0.0).to(CUDA)
    idx, st, prefix, cls = token_batch(p, CUDA)
    x = st.q.teacher_inputs(idx)
    cm = torch.compile(m)
    with torch.no_grad():
        close(cm(prefix, cls, x), m(prefix, cls, x))
    m.train()
    out_c, out_e = cm(prefix, cls, x), m(prefix, cls, x)
    close(out_c, out_e)
    gc = torch.autograd.grad(out_c.square().mean(), m.head.weight)[0]
    ge = torch.autograd.grad(out_e.square().mean(), m.head.weight)[0]
    torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-4 * float(ge.abs().max()))


@pytest.mark.parametrize("use_cache", [True, False])
def test_kv_cache_sampling_on_cuda_equals_teacher_forcing(use_cache):
    "Incremental sampling on CUDA (KV cache or recomputation), fed the teacher's tokens, shows exactly the teacher-forced logits."
    p = get_preset("test")
    m = open_model(p).to(CUDA)
    idx, st, prefix, cls = token_batch(p, CUDA)
    with torch.no_grad(): tf = m(prefix, cls, st.q.teacher_inputs(idx))
    rec = []
    def pick(step, logits): rec.append(logits); return idx[step].flatten(1)
    out = m._run_steps(prefix, cls, st, pick, use_cache=use_cache)
    close(torch.cat(rec, 1), tf)
    assert all(torch.equal(o, i) for o, i in zip(out, idx))
    # greedy sampling: the cache changes nothing
    a = m.generate(prefix, cls, st, Decoding("greedy", cfg=1.5), use_cache=True)
    b = m.generate(prefix, cls, st, Decoding("greedy", cfg=1.5), use_cache=False)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_seeded_sampling_with_cpu_generator_on_cuda():
    "msvar_sr/upscale and msvar_eval --sample seed a CPU torch.Generator; sampling a CUDA model with it must work and match the CPU's draws."
    from msvar.inference import SRModel
    p = get_preset("test")
    m = open_model(p)
    idx, st, prefix, cls = token_batch(p, "cpu", B=4)
    ref = m.generate(prefix, cls, st, Decoding("sample", top_k=8, cfg=1.5), generator=torch.Generator().manual_seed(0))
    _, st_c, _, _ = token_batch(p, CUDA, B=4)
    out = m.to(CUDA).generate(prefix.to(CUDA), cls.to(CUDA), st_c, Decoding("sample", top_k=8, cfg=1.5), generator=torch.Generator().manual_seed(0))
    same = sum(int((a.cpu() == b).sum()) for a, b in zip(out, ref)) / sum(r.numel() for r in ref)
    assert same > 0.5, same        # same probabilities up to rounding → the same draws, until a near-tie flips one and the image diverges
    sr = SRModel(random_hit(p), open_model(p), tokens="hit").to(CUDA).eval()
    ys = sr.sr_batch(image_batch(p)["lr"], generator=torch.Generator().manual_seed(0))
    assert [tuple(y.shape[-2:]) for y in ys] == [(s, s) for s in p.stage_sizes] and all(y.is_cuda for y in ys)


@pytest.mark.parametrize("first,then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_checkpoint_moves_between_gpu_and_cpu(tmp_path, first, then):
    "fit crashed after 5 of 6 steps (checkpoint at 4) on one device resumes on the other; its losses follow the uninterrupted run's."
    from msvar.losses import SRLoss
    from msvar.train import FitConfig, fit, load_checkpoint, read_log
    p = get_preset("test")
    batch = image_batch(p)
    def run(dev, out, **kw):
        torch.manual_seed(0)
        m = SRVAR.from_preset(p, cond_drop=0.0).to(dev)            # no class dropout: its draws use the device's RNG
        cfg = FitConfig(steps=6, lr=3e-3, warmup=0, ckpt_every=2, progress=False)
        return fit(m, SRLoss(random_hit(p)), lambda step: batch, cfg, out, **kw)
    ref = run(first, tmp_path / "ref")
    class Killed(Exception): pass
    def crash_after_5(model, step):                                        # a crash after step 5; the last checkpoint is at 4
        if step + 1 == 5: raise Killed
    with pytest.raises(Killed): run(first, tmp_path / "moved", after_step=crash_after_5)
    assert load_checkpoint(tmp_path / "moved" / "last.pt")["step"] == 4
    r = run(then, tmp_path / "moved", resume=True)
    assert r.step == 6 and next(r.model.parameters()).device.type == then
    a, b = [x["loss"] for x in ref.rows], [x["loss"] for x in read_log(tmp_path / "moved" / "log.jsonl")]
    assert len(b) == 6
    assert all(abs(x - y) < 1e-3 * max(1.0, abs(x)) for x, y in zip(a, b)), (a, b)
    w_ref = load_checkpoint(tmp_path / "ref" / "last.pt")["model"]
    w = load_checkpoint(tmp_path / "moved" / "last.pt")["model"]
    assert all(w[k].device.type == "cpu" for k in w)                       # load_checkpoint maps to the CPU by default
    assert max((w[k].float() - w_ref[k].float()).abs().max().item() for k in w) < 1e-3
