"""Fitting the ecosystem: progress that reads well in a log file, safetensors model files with a JSON header, and the
three-line Python API the README shows."""
import dataclasses, json, os, pickle, re, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from msvar.core import MsvarError
from msvar.files import save_image
from msvar.inference import SR_FORMAT, save_sr_model, load_sr_model
from msvar.model_file import write_model_file, is_safetensors
from msvar.api import load_model
from msvar.inference import OutputSettings

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- progress in a log file
def test_command_log_has_no_redraws(tmp_path):
    "msvar_make_testset with its output in a file: plain lines, at most one per 10 %, no carriage-return redraws."
    log = tmp_path / "log.txt"
    code = "from msvar.cli_data import make_testset_cli; make_testset_cli()"
    argv = [sys.executable, "-c", code, str(REPO / "data" / "images"), "-o", str(tmp_path / "set"), "-n", "40", "--preset", "test"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "w") as f: r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    text = log.read_bytes().decode()
    assert r.returncode == 0, text
    assert "\r" not in text and "\x1b[" not in text, text[:300]
    progress = [l for l in text.splitlines() if re.search(r"\d+%", l)]
    assert 1 <= len(progress) <= 11, text


# ---------------------------------------------------------------- safetensors model files
def test_model_file_is_safetensors_with_header(tmp_path, toy):
    f = save_sr_model(toy, tmp_path / "m.safetensors", half=True, steps=7)
    assert is_safetensors(f)
    n = int.from_bytes(f.read_bytes()[:8], "little")
    header = json.loads(json.loads(f.read_bytes()[8:8 + n])["__metadata__"]["msvar"])
    assert header["format"] == SR_FORMAT and header["preset"]["name"] == "test" and header["provenance"] == dict(steps=7)
    assert header["decoding"] and header["var_options"] == toy.var.options() and header["groups"] == ["hit", "var"]
    back = load_sr_model(f)
    assert all(torch.equal(v.half().float(), back.var.state_dict()[k]) for k, v in toy.var.state_dict().items())


def test_a_pickle_is_not_a_model_file(tmp_path, toy, capsys):
    "A torch pickle (of the state dicts, or an empty or text file) named as a model file is refused in one line naming it."
    torch.save(dict(format=SR_FORMAT, preset=dataclasses.asdict(toy.preset), hit=toy.hit.state_dict()), tmp_path / "m.pt")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "text.safetensors").write_text("hello")
    for f in ("m.pt", "empty.safetensors", "text.safetensors"):
        with pytest.raises(MsvarError, match="not a safetensors") as e: load_sr_model(tmp_path / f)
        assert str(tmp_path / f) in str(e.value) and "\n" not in str(e.value)


class Payload:
    "Unpickling this object creates `marker`."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch '{self.marker}'",))


def test_crafted_files_run_no_code(tmp_path, toy, capsys):
    "A pickle with a payload, under a .safetensors name or any other, is refused and never run."
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(MsvarError) as e: load_sr_model(evil)
    assert str(evil) in str(e.value) and not marker.exists()
    torch.save(dict(format=SR_FORMAT, preset=Payload(marker), hit={}, var={}), tmp_path / "evil.pt")
    with pytest.raises(MsvarError, match="not a safetensors"): load_sr_model(tmp_path / "evil.pt")
    assert not marker.exists()
    cut = save_sr_model(toy, tmp_path / "m.safetensors")
    cut.write_bytes(cut.read_bytes()[:5000])
    with pytest.raises(MsvarError, match="truncated"): load_sr_model(cut)


def test_header_that_does_not_match_the_weights(tmp_path, toy):
    f = save_sr_model(toy, tmp_path / "m.safetensors")
    header = load_sr_model(f).header
    groups = dict(hit=toy.hit.state_dict(), var=toy.var.state_dict())
    small = dict(header, preset=dataclasses.asdict(__import__("msvar.core").core.get_preset("small")))
    write_model_file(tmp_path / "small.safetensors", small, groups)
    with pytest.raises(MsvarError, match="header .preset 'small'. does not match its weights"): load_sr_model(tmp_path / "small.safetensors")
    write_model_file(tmp_path / "dec.safetensors", dict(header, decoding=dict(soft=1.0, beam=4)), groups)
    with pytest.raises(MsvarError, match="invalid header.*a header's decoding is"): load_sr_model(tmp_path / "dec.safetensors")
    write_model_file(tmp_path / "novar.safetensors", header, dict(hit=groups["hit"]))
    with pytest.raises(MsvarError, match="incomplete: no 'var'"): load_sr_model(tmp_path / "novar.safetensors")


# ---------------------------------------------------------------- the Python API
def test_upscale_keeps_the_input_mode(tmp_path, toy):
    model = load_model(save_sr_model(toy, tmp_path / "m.safetensors"), device="cpu")
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA")
    im.putpixel((0, 0), (10, 20, 30, 0))
    outs = model.upscale(im)
    assert {s: (o.size, o.mode) for s, o in outs.items()} == {2: ((22, 18), "RGBA"), 4: ((44, 36), "RGBA")}
    assert outs[4].getpixel((0, 0))[3] < 128 and outs[4].getpixel((43, 35))[3] > 0   # the alpha is the input's, resized
    assert model.upscale(im.convert("L"), OutputSettings(scales=(2,)))[2].mode == "L"
    assert model.upscale(np.asarray(im.convert("L")), OutputSettings(scales=(2,)))[2].mode == "L"
    save_image(torch.rand(3, 9, 11), tmp_path / "a.png")
    by_path = model.upscale(tmp_path / "a.png", OutputSettings(scales=(2,)))[2]
    by_tensor = model.upscale(torch.from_numpy(np.array(Image.open(tmp_path / "a.png"))).permute(2, 0, 1), OutputSettings(scales=(2,)))[2]
    assert by_path.mode == "RGB" and np.array_equal(np.asarray(by_path), np.asarray(by_tensor))


def test_readme_python_example_runs(monkeypatch):
    "The README's Python example, run as written from the repository root with the shipped model."
    readme = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "msvar.load_model(" in b]
    assert len(blocks) == 1, "README.md has no (or several) Python examples calling msvar.load_model"
    monkeypatch.chdir(REPO)
    ns = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    outs = ns["outs"]
    src = Image.open(REPO / "data" / "demo" / "lr" / "00002.png")
    assert {s: o.size for s, o in outs.items()} == {s: (src.width * s, src.height * s) for s in (2, 4)}
