"""`bench/gpu_check.py` cannot rot silently: its quick `cpu-smoke` mode (the `test` preset, seconds) runs here, writes its JSON
with the expected keys, and marks every GPU part as skipped on a machine without CUDA (on a GPU machine only the smoke part
runs: the GPU parts take minutes)."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest, torch
from repo_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
GPU_PARTS = ["gpu-tests", "torchrun", "throughput", "sampling", "cli"]


def test_gpu_check_cpu_smoke(tmp_path):
    out = tmp_path / "check.json"
    parts = ["cpu-smoke"] + ([] if torch.cuda.is_available() else GPU_PARTS)
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--minutes", "1", "--threads", "1", "--json", str(out),
                        "--parts", *parts], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert {"started", "budget_minutes", "machine", "note", "parts", "seconds"} <= set(rep)
    assert {"torch", "cuda_available", "cpu_threads"} <= set(rep["machine"])
    assert list(rep["parts"]) == parts
    smoke = rep["parts"]["cpu-smoke"]
    assert smoke["status"] == "ok", smoke
    s, t = smoke["sampling"], smoke["train"]["rows"][0]
    assert s["cache_scales_done"] == s["recompute_scales_done"] == 4 and s["kv_cache_s"] > 0 and s["kv_cache_speedup"] > 0
    assert t["preset"] == "test" and t["tokens"] == 46 and t["tokens_per_s"] > 0
    for name in parts[1:]:
        assert rep["parts"][name]["status"] == "skipped" and "no CUDA GPU" in rep["parts"][name]["reason"]
        assert f"{name}" in r.stdout and "no CUDA GPU" in r.stdout
    assert "GPU parts were skipped" in r.stdout


# ---------------------------------------------------------------- killing a command's processes
gpu_check = load_script("bench/gpu_check.py")

# a parent that starts a child in a session of its own (as torchrun starts its workers), writes the child's pid, then waits
SPAWNER = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
           "start_new_session=True); open(sys.argv[1], 'w').write(str(c.pid)); {tail}")


def _child_pid(f: Path, timeout=20.0) -> int:
    end = time.time() + timeout
    while not (f.exists() and f.read_text()):
        assert time.time() < end, "the spawner did not start its child"
        time.sleep(0.02)
    return int(f.read_text())


def _alive(pid: int) -> bool:
    t = gpu_check._proc_table()
    return pid in t and t[pid][1] not in "ZX"


def test_kill_tree_kills_children_in_other_sessions(tmp_path):
    f = tmp_path / "pid"
    pr = gpu_check.start_cmd([sys.executable, "-c", SPAWNER.format(tail="time.sleep(60)"), f], "t1")
    child = _child_pid(f)
    try:
        assert child in gpu_check.process_tree(pr.pid)
        assert gpu_check.kill_tree(pr.pid, "t1") == []
        pr.wait(5)
        assert not _alive(child)
    finally:
        gpu_check._signal(child, 9); pr.kill()


def test_run_cmd_timeout_kills_workers(tmp_path):
    f = tmp_path / "pid"
    with pytest.raises(gpu_check.OutOfTime):
        gpu_check.run_cmd([sys.executable, "-c", SPAWNER.format(tail="time.sleep(60)"), f], 4, "spawner")
    child = _child_pid(f, 0)
    try: assert not _alive(child)
    finally: gpu_check._signal(child, 9)


def test_run_cmd_kills_what_a_command_leaves_running(tmp_path):
    "A parent that exits at once leaves its child orphaned (no longer below it): the tag still finds it."
    f = tmp_path / "pid"
    rc, *_ = gpu_check.run_cmd([sys.executable, "-c", SPAWNER.format(tail=""), f], 30, "spawner")
    child = _child_pid(f, 0)
    try: assert rc == 0 and not _alive(child)
    finally: gpu_check._signal(child, 9)


def test_each_part_is_written_as_it_finishes(tmp_path, monkeypatch):
    "The JSON holds a part's result before the next part starts (a later part that hangs or crashes loses nothing)."
    out, seen = tmp_path / "check.json", {}
    def second(ctx, deadline):
        seen.update(json.loads(out.read_text())["parts"])
        return dict(brief="second")
    monkeypatch.setitem(gpu_check.PARTS, "cpu-train", lambda ctx, deadline: dict(brief="first"))
    monkeypatch.setitem(gpu_check.PARTS, "cpu-sampling", second)
    assert gpu_check.main(["--minutes", "1", "--json", str(out), "--parts", "cpu-train", "cpu-sampling"]) == 0
    assert seen["cpu-train"]["brief"] == "first"


@pytest.mark.skipif(os.environ.get("MSVAR_SLOW") != "1", reason="slow (≈ 1 minute: three torchrun launches): set MSVAR_SLOW=1")
def test_torchrun_kill_and_resume_dry_run(tmp_path):
    "torchrun with 2 gloo CPU processes on the `test` preset: killed at step 2, every worker dead, resumed from step 2."
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--parts", "torchrun", "--minutes", "8",
                        "--threads", "1", "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    res = json.loads(out.read_text())["parts"]["torchrun"]
    assert r.returncode == 0 and res["status"] == "ok", res.get("error") or r.stdout[-2000:]
    assert res["resumed_at_step"] == res["killed_at_step"] < res["steps"] and res["identical"]


# ---------------------------------------------------------------- one short lend: the budget, partial results, the plan
def test_default_budget_fits_one_short_lend(tmp_path, monkeypatch):
    "Without --minutes the whole check is planned for 9 minutes."
    out = tmp_path / "check.json"
    monkeypatch.setitem(gpu_check.PARTS, "cpu-train", lambda ctx, deadline: dict(brief="ok"))
    assert gpu_check.main(["--json", str(out), "--parts", "cpu-train"]) == 0
    assert json.loads(out.read_text())["budget_minutes"] <= 9


def test_a_part_past_its_share_is_stopped(tmp_path, monkeypatch):
    "A part still busy at the end of its share (a warm-up, a compilation) is stopped there and the next part runs."
    out = tmp_path / "check.json"
    def hangs(ctx, deadline):
        time.sleep(30)
        return dict(brief="never")
    monkeypatch.setattr(gpu_check, "GRACE", 0)
    monkeypatch.setitem(gpu_check.PARTS, "cpu-train", hangs)
    monkeypatch.setitem(gpu_check.PARTS, "cpu-sampling", lambda ctx, deadline: dict(brief="second"))
    t0 = time.time()
    gpu_check.main(["--minutes", "0.05", "--json", str(out), "--parts", "cpu-train", "cpu-sampling"])
    parts = json.loads(out.read_text())["parts"]
    assert time.time() - t0 < 20 and parts["cpu-train"]["status"] == "skipped"
    assert "end of its share" in parts["cpu-train"]["reason"]


def test_stopped_gpu_tests_keep_their_results():
    "pytest -v lines of the tests that finished before the budget ended are read back."
    text = "tests/test_gpu.py::test_a PASSED  [ 10%]\ntests/test_gpu.py::test_b[bf16] FAILED  [ 20%]\n"
    assert gpu_check.pytest_lines(text) == {"test_a": dict(status="passed", message=""),
                                            "test_b[bf16]": dict(status="failed", message="")}


def test_plan_and_search_must_agree():
    "A plan that expects a batch which ran out of memory, or one more than twice too cautious, is a failure."
    search = [dict(batch=8, s_per_step=1.0), dict(batch=16, s_per_step=1.9), dict(batch=32, fits=False)]
    assert gpu_check.plan_disagrees(16, 20, search) is None
    assert "ran out of memory" in gpu_check.plan_disagrees(16, 40, search)
    assert "over-counts" in gpu_check.plan_disagrees(16, 7, search)


def test_dry_run_of_the_throughput_part(tmp_path):
    "The throughput part's logic on the CPU (test preset): a batch search that ends and a result per batch."
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--parts", "throughput",
                        "--minutes", "2", "--threads", "1", "--json", str(out)], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    res = json.loads(out.read_text())["parts"]["throughput"]
    assert r.returncode == 0 and res["status"] == "ok", res.get("error") or r.stdout[-2000:]
    assert res["largest_batch"] >= 1 and res["search"]
