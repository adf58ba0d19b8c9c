"""msvar_fetch_data, offline: download (progress, resume with HTTP Range, checksum), atomic unpacking and the data-cache layout,
against a small archive served by the test itself on 127.0.0.1; and the commands that use the cache name it when it is empty."""
import dataclasses, hashlib, http.server, io, subprocess, sys, tarfile, threading
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

from msvar.core import MsvarError
from msvar import fetch
from msvar.fetch import DATASETS, download, extract, fetch_dataset, fetched


class Handler(http.server.BaseHTTPRequestHandler):
    "Serves `server.files`; honours `Range: bytes=N-` if `server.range_ok`; sends only `server.cut_at` bytes once (a broken connection)."
    def do_GET(self):
        body = self.server.files.get(self.path)
        if body is None: self.send_error(404); return
        rng = self.headers.get("Range"); self.server.ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng and self.server.range_ok else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        if start: self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        data = body[start:]
        if self.server.cut_at is not None: data, self.server.cut_at = data[:self.server.cut_at], None
        self.wfile.write(data)
    def log_message(self, *a): pass


def tiny_bsds() -> bytes:
    "A .tgz in the layout of BSDS300-images.tgz: 3 train and 2 test JPEGs."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for split, n in (("train", 3), ("test", 2)):
            for i in range(n):
                b = io.BytesIO(); Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(b, "JPEG")
                ti = tarfile.TarInfo(f"BSDS300/images/{split}/{split}{i}.jpg"); ti.size = b.tell(); b.seek(0); t.addfile(ti, b)
    return buf.getvalue()


@pytest.fixture
def served():
    tgz = tiny_bsds()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.range_ok, srv.cut_at, srv.ranges = {"/BSDS300-images.tgz": tgz}, True, None, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/BSDS300-images.tgz"
    yield srv, url, tgz, dataclasses.replace(DATASETS["bsds300"], url=url)
    srv.shutdown(); srv.server_close()


def test_fetch_bsds300_layout(served, tmp_path):
    srv, url, tgz, ds = served
    rec = fetch_dataset(ds, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["BSD200", "T91"]
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == ["BSD100", "Set14", "Set5"]
    assert len(list((tmp_path / "train" / "BSD200").glob("*.jpg"))) == 3 and len(list((tmp_path / "test" / "BSD100").glob("*.jpg"))) == 2
    assert rec["sha256"] == hashlib.sha256(tgz).hexdigest() and rec["checksum"].startswith("checksum not pinned")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract")] and list((tmp_path / "archives").iterdir()) == []
    assert fetch_dataset(ds, tmp_path, progress=False)["skipped"] and len(srv.ranges) == 1
    assert fetched("train", root=tmp_path) == tmp_path / "train"


def test_resume_with_range(served, tmp_path):
    srv, url, tgz, ds = served
    half = len(tgz) // 2; srv.cut_at = half
    with pytest.raises(MsvarError, match="resume"): download(url, tmp_path / "x.tgz", progress=False)
    assert (tmp_path / "x.tgz.part").stat().st_size == half and not (tmp_path / "x.tgz").exists()
    download(url, tmp_path / "x.tgz", sha256=hashlib.sha256(tgz).hexdigest(), progress=False)
    assert srv.ranges[-1] == f"bytes={half}-" and (tmp_path / "x.tgz").read_bytes() == tgz
    (tmp_path / "y.tgz.part").write_bytes(b"junk" * 10); srv.range_ok = False     # a server without Range: start again
    download(url, tmp_path / "y.tgz", progress=False)
    assert (tmp_path / "y.tgz").read_bytes() == tgz


def test_checksum_mismatch_changes_nothing(served, tmp_path):
    srv, url, tgz, ds = served
    with pytest.raises(MsvarError, match="checksum mismatch"):
        fetch_dataset(dataclasses.replace(ds, sha256="0" * 64), tmp_path, progress=False)
    assert not (tmp_path / "train").exists() and list((tmp_path / "archives").iterdir()) == []
    pinned = dataclasses.replace(ds, sha256=hashlib.sha256(tgz).hexdigest())
    assert fetch_dataset(pinned, tmp_path, progress=False)["checksum"].startswith("verified")


def test_unsafe_or_wrong_archives(tmp_path, served):
    srv, url, tgz, ds = served
    (tmp_path / "a.tgz").write_bytes(tgz)
    with pytest.raises(MsvarError, match="has no folder"): extract(tmp_path / "a.tgz", tmp_path / "o", (("DIV2K_train_HR", "x"),))
    assert list((tmp_path / "o").iterdir()) == []
    with tarfile.open(tmp_path / "evil.tar", "w") as t:
        ti = tarfile.TarInfo("../evil.txt"); ti.size = 1; t.addfile(ti, io.BytesIO(b"x"))
    with pytest.raises(MsvarError, match="unsafe"): extract(tmp_path / "evil.tar", tmp_path / "o")
    assert not (tmp_path / "evil.txt").exists()


def test_no_network_gives_manual_steps(tmp_path):
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()    # a port nobody listens on
    ds = dataclasses.replace(DATASETS["bsds300"], url=f"http://127.0.0.1:{port}/BSDS300-images.tgz")
    with pytest.raises(MsvarError, match=r"cannot reach[\s\S]*Manual steps[\s\S]*--archive"): fetch_dataset(ds, tmp_path, progress=False)
    with pytest.raises(MsvarError, match="no stable direct download link"): fetch_dataset(DATASETS["drealsr"], tmp_path)


def test_help_lists_every_dataset():
    r = subprocess.run([sys.executable, "-c", "from msvar.cli_data import fetch_data_cli; fetch_data_cli()", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for d in DATASETS.values(): assert d.name in r.stdout and d.size in r.stdout and d.source.split(": ")[-1] in r.stdout


def test_commands_name_the_fetch_command_when_nothing_is_there(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSVAR_CACHE", str(tmp_path / "cache"))
    from msvar.cli_reproduce import reproduce_cli
    from msvar.cli_train import train_cli
    from msvar.cli_sr import eval_cli
    for cli, argv in ((reproduce_cli, ["--preset", "test", "--out", str(tmp_path / "r")]),
                      (train_cli, ["--preset", "test", "--tokenizer", str(tmp_path / "t.pt"), "--out", str(tmp_path / "v")]),
                      (eval_cli, ["--out", str(tmp_path / "e")])):
        with pytest.raises(SystemExit) as e: cli(argv)
        assert e.value.code != 0
        assert "msvar_fetch_data bsds300" in capsys.readouterr().err, cli.__name__


RACE = """
import os, sys, time
from pathlib import Path
import msvar.fetch as fetch
unpack = fetch.extract
def held_extract(*a, **k):  # the fetch that holds the cache waits here until the test has seen the other refused
    while not Path(sys.argv[1] + ".release").exists():
        time.sleep(0.01)
    return unpack(*a, **k)
fetch.extract = held_extract
Path(f"{sys.argv[1]}.ready.{os.getpid()}").touch()  # imports done
while not Path(sys.argv[1]).exists():  # both processes have imported everything: start together
    time.sleep(0.005)
try:
    rec = fetch.fetch_dataset(fetch.DATASETS["bsds300"], Path(sys.argv[2]), Path(sys.argv[3]), progress=False)
except fetch.MsvarError as e:
    sys.exit(f"error: {e}")
print(rec["folders"])
"""


def test_two_fetches_into_one_cache_at_once(tmp_path):
    "Two processes fetching into one cache at once: one is refused in one line naming the holder; the cache holds one whole fetch."
    import time
    (tmp_path / "bsds.tgz").write_bytes(tiny_bsds())
    go, out = tmp_path / "go", tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(go), str(out), str(tmp_path / "bsds.tgz")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.time() + 240
    while len(list(tmp_path.glob("go.ready.*"))) < 2 and time.time() < deadline:  # both have imported torch and msvar
        time.sleep(0.05)
    go.touch()
    while all(p.poll() is None for p in procs) and time.time() < deadline:  # one of them is refused...
        time.sleep(0.05)
    (tmp_path / "go.release").touch()                             # ...then the one holding the cache unpacks
    res = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in res) == [0, 1], res
    winner = next(p for p, r in zip(procs, res) if r[0] == 0)
    err = next(r[2] for r in res if r[0] == 1)
    assert len(err.strip().splitlines()) == 1 and "in use by another msvar run" in err and f"pid {winner.pid}" in err, err
    assert sorted(p.name for p in (out / "train" / "BSD200").iterdir()) == ["train0.jpg", "train1.jpg", "train2.jpg"]
    assert sorted(p.name for p in out.iterdir()) == [".fetched", "test", "train"]   # no second unpacking, no lock left
