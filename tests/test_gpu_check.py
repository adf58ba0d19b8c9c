"""`bench/gpu_check.py` cannot rot silently: its quick `cpu-smoke` mode (the `test` preset, seconds) runs here, writes its JSON
with the expected keys, and marks every GPU part as skipped on a machine without CUDA (on a GPU machine only the smoke part
runs: the GPU parts take minutes)."""
import json, subprocess, sys
from pathlib import Path
import torch

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
