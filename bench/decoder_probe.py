"""Is the tokenizer's ceiling on clean photos its capacity or its training? The shipped model's ×2 and ×4 stage decoders
fine-tuned for PSNR alone (ℓ2, the encoder and the vocabulary frozen, the tokens as Algorithm 1 gives them) on random
64-px crops of the training images, and the clean protocol's ceiling (bench/clean_ceiling.py) measured as they train.

    python bench/decoder_probe.py TRAIN_DIR... --val VAL_DIR -n 4 --steps 600

A probe, not a recipe: the decoders it trains are thrown away.
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from clean_ceiling import ceiling, mse_db  # noqa: E402
from user_photos import bicubic_up, clean_inputs  # noqa: E402

from msvar.core import resize, to_signed  # noqa: E402
from msvar.files import list_images, load_image  # noqa: E402
from msvar.hit import hit_tokenize, stage_image  # noqa: E402
from msvar.inference import default_model_path, load_sr_model  # noqa: E402


def random_crops(files, n: int, size: int, seed: int = 0) -> torch.Tensor:
    "n random size×size crops (n, 3, size, size) of the images, as many from each."
    g = torch.Generator().manual_seed(seed)
    per, out = -(-n // len(files)), []
    for f in files:
        x = load_image(f)
        H, W = x.shape[-2:]
        for _ in range(per):
            i, j = (torch.randint(0, m - size + 1, (1,), generator=g).item() for m in (H, W))
            out.append(x[:, i : i + size, j : j + size])
    return torch.stack(out)[torch.randperm(len(out), generator=g)[:n]]


def clean_psnr(model, images, s: int) -> tuple:
    "Mean PSNR-RGB of the ×s ceiling and of bicubic on the clean images."
    c, b = [], []
    for _, hr in images:
        lr = resize(hr, (hr.shape[-2] // s, hr.shape[-1] // s), "bicubic").clamp(0, 1)
        c.append(mse_db(ceiling(model, hr, s)[0], hr))
        b.append(mse_db(bicubic_up(lr, hr.shape[-2:]), hr))
    return sum(c) / len(c), sum(b) / len(b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", nargs="+", help="training image folders (never the validation images)")
    ap.add_argument("--val", required=True, help="the clean protocol's validation folder")
    ap.add_argument("-n", type=int, default=4, help="validation images (4)")
    ap.add_argument("--crops", type=int, default=1024, help="training crops, tokenized once (1024)")
    ap.add_argument("--steps", type=int, default=600, help="steps of 16 crops (600)")
    ap.add_argument("--every", type=int, default=200, help="measure every so many steps (200)")
    ap.add_argument("--lr", type=float, default=2e-4, help="Adam's learning rate (2e-4)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = load_sr_model(default_model_path(), device="cpu").float()
    p = model.preset
    val = {Path(f).resolve() for f in list_images([a.val])}
    files = [f for f in list_images(a.train) if Path(f).resolve() not in val]
    x = random_crops(files, a.crops, p.hr_size)
    with torch.no_grad():
        t = [hit_tokenize(model.hit.tok, x[i : i + 64], p) for i in range(0, len(x), 64)]
    images = clean_inputs(a.val, a.n, 256)
    print(f"{len(files)} training images, {len(x)} crops, {a.n} clean images: {time.perf_counter() - t0:.0f} s")
    for s in (2, 4):
        n = model.scales.index(s)
        f_hat = torch.cat([tt.f_hat[n] for tt in t])
        target = to_signed(stage_image(x, p, n))
        shipped = copy.deepcopy(model.hit.stage_decoders[n])
        dec = model.hit.stage_decoders[n].train().requires_grad_(True)
        opt = torch.optim.Adam(dec.parameters(), lr=a.lr)
        g = torch.Generator().manual_seed(0)
        c, b = clean_psnr(model, images, s)
        print(f"x{s}: step 0 (shipped): ceiling {c:.2f} dB, bicubic {b:.2f} dB", flush=True)
        for step in range(1, a.steps + 1):
            i = torch.randint(0, len(x), (16,), generator=g)
            loss = F.mse_loss(dec(f_hat[i]), target[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % a.every == 0:
                dec.eval()
                psnr_train = 10 * torch.log10(4 / loss.detach()).item()
                print(
                    f"x{s}: step {step}: ceiling {clean_psnr(model, images, s)[0]:.2f} dB (batch {psnr_train:.2f} dB), "
                    f"{time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
                dec.train()
        model.hit.stage_decoders[n] = shipped.eval()


if __name__ == "__main__":
    main()
