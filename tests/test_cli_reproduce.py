"""msvar_reproduce: one run per run folder at a time, and a plan whose training defaults are the preset's recipe."""

import dataclasses
import subprocess
import sys

import pytest

import msvar.reproduce as rp
from msvar.cli_reproduce import reproduce_cli
from msvar.core import data_dir

HOLDER = """import sys, time
from pathlib import Path
import msvar.reproduce as rp
from msvar.cli_reproduce import reproduce_cli

def wait(stage, *a, **k):
    print("holding", flush=True)
    while not Path(sys.argv[1]).exists():
        time.sleep(0.05)
    return dict(seconds=0.0, skipped=True)

rp.run_stage = wait
reproduce_cli(sys.argv[2:])
"""  # a msvar_reproduce whose stages wait for a file to appear


def test_second_reproduce_into_one_folder_is_refused(tmp_path, monkeypatch, capsys):
    "Two msvar_reproduce into one --out at once: the second exits 1 with one line naming the first; no stage of it runs."
    argv = ["--preset", "test", "--out", str(tmp_path / "run"), "--data", str(data_dir() / "train"),
            "--test", str(data_dir() / "test")]
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "go")] + argv, stdout=subprocess.PIPE,
                             text=True)
    try:
        line = first.stdout.readline()
        while line and "holding" not in line:
            line = first.stdout.readline()
        assert line, "the first run ended before it held the folder"
        ran = []
        monkeypatch.setattr(rp, "run_stage", lambda *a, **k: ran.append(a))
        with pytest.raises(SystemExit) as e:
            reproduce_cli(argv)
        err = capsys.readouterr().err.strip()
        assert (e.value.code, ran) == (1, [])
        assert len(err.splitlines()) == 1 and "in use" in err and f"pid {first.pid}" in err, err
    finally:
        (tmp_path / "go").touch()
        assert first.wait(timeout=120) == 0
    assert not (tmp_path / "run" / ".msvar.lock").exists()  # released at the end of the first run


def test_plan_trains_with_the_recipes_dpo_beta(tmp_path, monkeypatch):
    "A plan that sets no β trains `ours` with the preset's TrainRecipe β (here changed to 0.3); `beta1` keeps 1."
    real = rp.get_preset

    def preset(name, **kw):
        p = real(name, **kw)
        return dataclasses.replace(p, train=dataclasses.replace(p.train, dpo_beta=0.3))

    monkeypatch.setattr(rp, "get_preset", preset)
    got = {}
    monkeypatch.setattr(rp, "train_var", lambda *a, **k: got.setdefault(a[3].parent.name, a[4].dpo_beta))
    monkeypatch.setattr(rp, "train_seconds", lambda d: 0.0)
    assert rp.PLANS["small"].dpo_beta is None and rp.ReproPlan("test", 1, 1, 1, 1, 1, 1, 1).dpo_beta is None
    for name in ("ours", "exact", "beta1"):
        rp.stage_var(rp.PLANS["test"], tmp_path, tmp_path, name)
    assert got == {"var_ours": 0.3, "var_exact": 0.3, "var_beta1": 1.0}
