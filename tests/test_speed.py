"The speed bench's yardstick and part timer (bench/sr_speed.py)."

from dataclasses import replace
import time
from pathlib import Path
import pytest
import torch
import msvar.inference as inference
from msvar.inference import OutputSettings, upscale
from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
sr_speed = load_script("bench/sr_speed.py")


def test_rrdbnet_is_real_esrgans_size_and_upscales_by_four():
    "23 RRDB blocks, 64 channels, growth 32: 16.7M parameters, a (3, h, w) input becomes (3, 4h, 4w)."
    net = sr_speed.RRDBNet().eval()
    n = sum(p.numel() for p in net.parameters())
    assert 16.6e6 < n < 16.8e6, n
    with torch.no_grad():
        y = net(torch.rand(1, 3, 5, 7))
    assert y.shape == (1, 3, 20, 28)


def test_parts_charge_time_to_the_innermost_part():
    "A part inside another takes its own time; the outer one keeps only what is outside the inner."
    parts = sr_speed.Parts()
    inner = parts.wrap(lambda: time.sleep(0.2), "inner")
    outer = parts.wrap(lambda: (time.sleep(0.02), inner()), "outer")
    outer()
    assert parts.sec["inner"] >= 0.2, dict(parts.sec)
    assert 0.02 <= parts.sec["outer"] < 0.2, dict(parts.sec)
    assert parts.calls == {"outer": 1, "inner": 1}


def test_native_bf16_reads_the_flags():
    "AMX before AVX-512-BF16; neither: none."
    assert sr_speed.native_bf16({"avx512_bf16", "amx_bf16"}) == "AMX-BF16"
    assert sr_speed.native_bf16({"avx512_bf16"}) == "AVX-512-BF16"
    assert sr_speed.native_bf16({"avx2"}) == "none"


def test_upscale_decodes_only_the_scales_it_writes(toy, monkeypatch):
    """×2 and ×4 alone: the ×1 stage decoder never runs, and ×2, ×4 are bit-identical to those of a ×1, ×2, ×4 run;
    with ×2 from the ×4 output (the default) the ×2 stage decoder does not run either."""
    x = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))
    full = upscale(x, toy, OutputSettings(scales=(1, 2, 4), x2_from=2))
    seen = []
    decode = toy.hit.decode_stage
    monkeypatch.setattr(toy.hit, "decode_stage", lambda f_hat, n: seen.append(n) or decode(f_hat, n))
    part = upscale(x, toy, OutputSettings(scales=(2, 4), x2_from=2))
    assert sorted(set(seen)) == [1, 2], seen
    assert sorted(part) == [2, 4]
    assert all(torch.equal(part[s], full[s]) for s in (2, 4))
    seen.clear()
    upscale(x, toy, OutputSettings(scales=(2, 4)))
    assert sorted(set(seen)) == [2], seen


def test_upscale_shows_a_tile_bar_when_asked_or_when_the_image_is_large(toy, monkeypatch):
    "progress=None: a bar only beyond PROGRESS_TILES tiles; True and False as said."
    bars = []
    monkeypatch.setattr(inference, "progress_bar", lambda it, **kw: bars.append(kw.get("desc")) or it)
    small = torch.rand(3, 8, 8)
    upscale(small, toy, progress=None)
    assert bars == []
    upscale(small, toy, progress=True)
    assert bars == ["tiles"]
    side = 2 + 6 * 7  # a tile of 8 LR pixels every 6: 7 × 7 = 49 tiles
    assert len(inference.tile_starts(side, 8, 2)) ** 2 > inference.PROGRESS_TILES
    upscale(torch.rand(3, side, side), toy, progress=None)
    assert bars == ["tiles", "tiles"]


def test_bf16_precision_runs_the_tiles_under_autocast(toy, monkeypatch):
    "precision='bf16': every tile batch runs under bf16 autocast (fp32 never does); the outputs stay close to fp32's."
    x = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))
    seen = []
    sr_batch = toy.sr_batch
    monkeypatch.setattr(toy, "sr_batch", lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or sr_batch(*a, **k))
    fp32 = upscale(x, toy, replace(inference.DEFAULT_OUTPUT, precision="fp32"))
    n = len(seen)
    bf16 = upscale(x, toy, replace(inference.DEFAULT_OUTPUT, precision="bf16"))
    assert n > 0 and seen[:n] == [False] * n and seen[n:] == [True] * n, seen
    assert all((bf16[s] - fp32[s]).abs().mean() < 0.05 for s in (2, 4))


@pytest.mark.parametrize("native", [False, True])
def test_the_default_precision_follows_the_cpu(toy, monkeypatch, native):
    "precision='auto' (the default): bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or AMX), else fp32."
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert inference.DEFAULT_OUTPUT.precision == "auto"
    seen = []
    sr_batch = toy.sr_batch
    monkeypatch.setattr(toy, "sr_batch", lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or sr_batch(*a, **k))
    upscale(torch.rand(3, 20, 20), toy)
    assert seen and set(seen) == {native}, seen


@pytest.mark.parametrize("tokens", ["hit", "plain"])
def test_bf16_runs_both_token_kinds(toy, tokens):
    "Under bf16 autocast every decoding path runs (the plain tokens' antialiased resize has no bf16 kernel on a CPU)."
    model = inference.SRModel(toy.hit, toy.var, tokens=tokens)
    out = upscale(torch.rand(3, 20, 20), model, OutputSettings(precision="bf16"))
    assert all(y.dtype == torch.float32 and torch.isfinite(y).all() for y in out.values())


def test_the_flop_bound_line_scales_the_profile_by_tiles(capsys):
    "msvar's least time: FLOPs per tile × tiles ÷ the peak; beside the faster RRDBNet's time, as a speed ratio."
    secs = dict(msvar_fp32=9.0, msvar_bf16=8.0, rrdb_fp32=2.0, rrdb_bf16=1.0)
    sr_speed.bound_lines([(1, (10, 20), 4, secs)], 5e9, {1: 10.0})  # 4 tiles × 5 GFLOP at 10 GFLOP/s: 2 s
    out = capsys.readouterr().out
    assert "at least 2.00 s" in out and "took 1.00 s" in out and "0.50× its speed" in out, out


def test_the_bench_counts_the_tiles_upscale_cuts():
    "n_tiles: the tiles `upscale` cuts with the default overlap, starts on its grid of `step` input px."
    import torch
    from msvar.core import resize
    from msvar.inference import upscale, OutputSettings
    seen = []
    def toy(t):
        seen.append(len(t))
        return [resize(t, t.shape[-1] * s, "bicubic") for s in (1, 2, 4)]
    toy.tile, toy.scales, toy.step = 16, (1, 2, 4), 2
    for h, w in ((96, 96), (10, 10), (37, 50)):
        seen.clear()
        upscale(torch.rand(3, h, w), toy, OutputSettings(scales=(4,), fix="none"))
        assert sum(seen) == sr_speed.n_tiles(h, w, 16, 2), (h, w)
    assert sr_speed.n_tiles(96, 96, 16, 2) == 7 * 7  # 16-px tiles overlapping by 2: 7 per 96-px side
