"""Folder locks and model files that say what is wrong in one line: a busy folder, a filesystem without locks, a
tensor of the wrong data type, a file named .safetensors that is not one, non-finite --init weights.

    pytest -q tests/test_files_safety.py
"""
import errno
import fcntl
import os
import struct
import json
from pathlib import Path

import pytest
import torch

from msvar.core import MsvarError, get_preset
from msvar.files import LOCK_NAME, FolderBusyError, hold_folder, _try_lock, _release
from msvar.checkpoint import check_state_dict
from msvar.model_file import read_model_file
from msvar.inference import load_sr_model, save_sr_model

NO_LOCK_ENV = "MSVAR_NO_LOCK"  # the documented switch for filesystems without locks (chapter 12_files)


def one_line(e: BaseException) -> str:
    "The message of `e`, asserted to be one line."
    msg = str(e)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- folder locks
def test_busy_folder_error_is_one_line(tmp_path):
    "The holder's line in the lock file ends with a newline; the error used to break there ('since …⏎): two runs…')."
    fd = _try_lock(tmp_path / LOCK_NAME)  # another run's lock (its own open file, its pid and start time in the file)
    try:
        with pytest.raises(FolderBusyError) as e:
            with hold_folder(tmp_path):
                pass
    finally:
        _release(tmp_path, fd)
    msg = one_line(e.value)
    assert f"pid {os.getpid()}, " in msg and ", since " in msg and "): two runs would mix" in msg


def test_busy_folder_with_an_empty_lock_file(tmp_path):
    "A holder that has not written its name yet: the refusal names 'another process' (it used to raise IndexError)."
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(FolderBusyError) as e:
            with hold_folder(tmp_path):
                pass
    finally:
        os.close(fd)
    assert "(another process)" in one_line(e.value)


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS], ids=["ENOLCK", "ENOSYS"])
def test_filesystem_without_locks_is_one_line(tmp_path, monkeypatch, code):
    "NFS without locking (ENOLCK), Lustre without flock (ENOSYS): one MsvarError saying what to do, no traceback."

    def no_flock(fd, op):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.delenv(NO_LOCK_ENV, raising=False)
    with pytest.raises(MsvarError) as e:
        with hold_folder(tmp_path / "out"):
            pass
    msg = one_line(e.value)
    assert "does not support file locks" in msg and f"{NO_LOCK_ENV}=1" in msg and "local disk" in msg
    assert list((tmp_path / "out").iterdir()) == []  # no lock file left behind


def test_no_lock_env_holds_the_folder_without_a_lock(tmp_path, monkeypatch, capsys):
    "MSVAR_NO_LOCK=1 runs on a filesystem without locks, with a warning on stderr; nothing is written into the folder."

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.setenv(NO_LOCK_ENV, "1")
    with hold_folder(tmp_path / "out") as out:
        with hold_folder(out):  # nested holds stay free
            assert list(out.iterdir()) == []
    err = capsys.readouterr().err
    assert "not locked" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- data types of a model's tensors
def relabel(path: Path, tensor: str, dtype: str):
    "Rewrite the data type of `tensor` in a safetensors file's table (same length, same bytes), as a tamperer would."
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    table = json.loads(raw[8 : 8 + n])
    old = table[tensor]["dtype"]
    assert len(old) == len(dtype)
    table[tensor]["dtype"] = dtype
    text = json.dumps(table, separators=(",", ":")).encode()
    assert len(text) <= n
    path.write_bytes(raw[:8] + text.ljust(n) + raw[8 + n :])


def test_relabelled_dtype_is_refused(toy, tmp_path):
    "A float32 weight labelled I32 (same shape, same bytes) used to be read as integers and used; now: one line."
    path = save_sr_model(toy, tmp_path / "m.safetensors")
    relabel(path, "var.head.weight", "I32")
    with pytest.raises(MsvarError) as e:
        load_sr_model(path)
    msg = one_line(e.value)
    assert str(path) in msg and "'head.weight' as int32" in msg and "float32" in msg


def test_unknown_dtype_is_named(toy, tmp_path):
    "A data type no safetensors reader knows: the message names the tensor and the type."
    path = save_sr_model(toy, tmp_path / "m.safetensors")
    relabel(path, "var.head.weight", "X32")
    with pytest.raises(MsvarError) as e:
        load_sr_model(path)
    msg = one_line(e.value)
    assert str(path) in msg and "tensor 'var.head.weight' has an unknown data type 'X32'" in msg


def test_half_precision_model_file_loads(toy, tmp_path):
    "A model file saved in half precision (fp16) loads into the float32 model; a bf16 state dict fits a float32 one."
    path = save_sr_model(toy, tmp_path / "half.safetensors", half=True)
    model = load_sr_model(path, "cpu")
    assert model.var.head.weight.dtype == torch.float32
    assert torch.allclose(model.var.head.weight, toy.var.head.weight.half().float())
    check_state_dict(toy.var, {k: v.bfloat16() if v.is_floating_point() else v for k, v in toy.var.state_dict().items()})


@pytest.mark.parametrize("content", [b"", b"these are not weights\n"], ids=["empty", "text"])
def test_a_safetensors_name_that_is_no_safetensors_file(tmp_path, content):
    "An empty or text file named .safetensors: 'not a safetensors model file' (it used to say 'not a torch file?')."
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    for load in (load_sr_model, read_model_file):
        with pytest.raises(MsvarError) as e:
            load(path)
        msg = one_line(e.value)
        assert f"{str(path)!r} is not a safetensors model file" in msg and "torch" not in msg


# ---------------------------------------------------------------- non-finite weights given to --init
def test_nonfinite_init_weights_name_the_file(tmp_path):
    "msvar_train_tokenizer --init FILE with NaN weights names FILE (it used to say '(given state dict)')."
    from msvar.tokenizer import Tokenizer, save_tokenizer
    from msvar.train_tokenizer import _start_tokenizer

    p = get_preset("test")
    tok = Tokenizer.from_preset(p)
    with torch.no_grad():
        next(tok.parameters()).fill_(float("nan"))
    path = save_tokenizer(tok, p, tmp_path / "nan.pt")
    with pytest.raises(MsvarError) as e:
        _start_tokenizer(p, None, 1, 0, torch.device("cpu"), True, path)
    msg = one_line(e.value)
    assert str(path) in msg and "NaN" in msg and "given state dict" not in msg
