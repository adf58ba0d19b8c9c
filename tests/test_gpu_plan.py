"""The memory plan counts the path that runs on the target device, and every trainer checks its step against the
device's memory before the first step; a run that expects a GPU and finds none stops with one line.

Nothing here needs a GPU: the counts run on fake tensors, the GPU's memory and a small machine are simulated."""
import dataclasses
import pytest
import torch
from msvar.core import MsvarError, get_preset
from msvar.gpu import GPU_MEMORY_USE, memory_plan, check_plan, check_launch, var_saved_bytes
import msvar.gpu

GiB, GB = 2**30, 1e9


@pytest.fixture(scope="module")
def paper_plans():
    "The paper preset's VAR plans (bf16, CE + DPO, global batch 384 on 8 GPUs) on the CUDA and on the CPU path."
    p = get_preset("paper")
    return {(dev, sp): memory_plan(p, 384, 8, GPU_MEMORY_USE * 80 * GB, second_pass=sp, device_type=dev)
            for dev in ("cuda", "cpu") for sp in (False, True)}


def test_cuda_path_per_image_and_accum(paper_plans):
    "CUDA runs SDPA: about 4.30 GiB per image, --accum 4 on 80 GB and 2 on 141 GB (the README's figures)."
    plan = paper_plans[("cuda", False)]
    assert plan.per_image / GiB == pytest.approx(4.30, abs=0.01)
    assert plan.accum == 4 and plan.micro == 12
    on_141 = check_plan(memory_plan("paper", 384, 8, GPU_MEMORY_USE * 141 * GB), None, "cuda")
    assert on_141.accum == 2


def test_cuda_path_with_the_second_pass(paper_plans):
    "--second-pass doubles the teacher-forced batch: about 8.4 GiB per image, --accum 8 on 80 GB (not a refusal)."
    plan = paper_plans[("cuda", True)]
    assert plan.per_image / GiB == pytest.approx(8.44, abs=0.02)
    assert plan.accum == 8


def test_cpu_path_is_counted_separately(paper_plans):
    "A bf16 CPU step keeps its matrix-product attention maps: about 32.8 GiB per image, not the GPU's figure."
    assert paper_plans[("cpu", False)].per_image / GiB == pytest.approx(32.8, abs=0.1)
    assert paper_plans[("cpu", False)].per_image > 7 * paper_plans[("cuda", False)].per_image


def test_the_count_is_a_real_cpu_step():
    "On the test preset the CPU path's fake count equals the bytes a real bf16 CPU step saves; the CUDA path's is less."
    from msvar.var import SRVAR
    from msvar.losses import token_ce, sequence_logprob, dpo_loss
    P = get_preset("test")
    B, n, first, Cv = 2, P.n_image_tokens, P.patch_nums[0] ** 2, P.tokenizer.z_channels
    m, saved = SRVAR.from_preset(P).train(), {}
    def pack(t):
        saved[id(t)] = t.numel() * t.element_size()
        return t
    z = torch.randint(0, P.tokenizer.vocab_size, (B, n))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = m(torch.randn(B, Cv, P.latent_side, P.latent_side), torch.zeros(B, dtype=torch.long),
                   torch.randn(B, n - first, Cv))
        token_ce(logits, z) + dpo_loss(sequence_logprob(logits, z), sequence_logprob(logits, z))
    fake, n_params = var_saved_bytes(P, B, "bf16", device_type="cpu")
    assert fake == sum(saved.values()) and n_params == sum(q.numel() for q in m.parameters())
    assert var_saved_bytes(P, B, "bf16", device_type="cuda")[0] < fake


def test_the_hit_finetune_fits_an_80_gb_card():
    "README step 2 (batch 32, one process): 3.3 GiB per image in bf16; the plan splits it so that it fits 80 GB."
    from msvar.train_tokenizer import finetune_plan
    plan = finetune_plan(get_preset("paper"), 32, "bf16", "cpu")
    assert plan.per_image / GiB == pytest.approx(3.3, abs=0.1)
    assert not plan.fits(1)
    on_80 = check_plan(dataclasses.replace(plan, budget=GPU_MEMORY_USE * 80 * GB), None, "cuda")
    assert on_80.accum == 2 and on_80.need(2) <= GPU_MEMORY_USE * 80 * GB


@pytest.mark.parametrize("device, world", [("cuda", 1), ("cuda:0", 1), (None, 8)])
def test_no_gpu_stops_with_one_line(monkeypatch, device, world):
    "CUDA asked for, or torchrun with several processes, and no usable GPU: one line naming the driver/CUDA problem."
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(MsvarError) as e:
        check_launch(device, world)
    assert "\n" not in str(e.value) and "driver" in str(e.value) and "13.0" in str(e.value)
    check_launch("cpu", world)                                             # CPUs asked for: fine
    check_launch(None, 1)


def _small_machine(monkeypatch, mib: float):
    "Simulate a machine with `mib` MiB of free memory."
    monkeypatch.setattr(msvar.gpu, "available_memory", lambda: mib * 2**20)


def test_var_trainer_checks_memory_first(monkeypatch, tmp_path):
    "train_var on a small machine: refused before the first step, naming --accum (or --batch-size)."
    from msvar.hit import HITTokenizer, save_hit
    from msvar.tokenizer import Tokenizer
    from msvar.train_var import train_var, VarTrainConfig
    from msvar.core import data_dir
    P = get_preset("test")
    save_hit(HITTokenizer(Tokenizer.from_preset(P), P), tmp_path / "hit.pt")
    _small_machine(monkeypatch, 1)
    cfg = VarTrainConfig(steps=1, batch_size=64, precision="fp32", progress=False, device="cpu")
    with pytest.raises(MsvarError, match="raise --accum to|even with one image"):
        train_var("test", data_dir() / "test" / "Set5", tmp_path / "hit.pt", tmp_path / "v", cfg)
    assert not (tmp_path / "v" / "last.pt").exists()


def test_tokenizer_trainers_check_memory_first(monkeypatch, tmp_path):
    "train_tokenizer and finetune_hit on a small machine: refused before the first step, naming the option."
    from msvar.train_tokenizer import train_tokenizer, finetune_hit
    from msvar.tokenizer import Tokenizer
    from msvar.core import data_dir
    P = get_preset("test")
    _small_machine(monkeypatch, 1)
    with pytest.raises(MsvarError, match="raise --accum to|even with one image"):
        train_tokenizer("test", data_dir() / "test" / "Set5", tmp_path / "t", steps=1, batch_size=256,
                        lpips_weight=0, progress=False, device="cpu")
    with pytest.raises(MsvarError, match="raise --accum to|even with one image"):
        finetune_hit((Tokenizer.from_preset(P), P), tmp_path / "h", data_dir() / "test" / "Set5", steps1=1, steps2=0,
                     batch_size=256, lpips_weight=0, progress=False, device="cpu")
    assert not (tmp_path / "t" / "last.pt").exists() and not (tmp_path / "h" / "last.pt").exists()
