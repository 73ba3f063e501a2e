"""The checkpoint room: identities by value, refused resumes that name the setting, safe writes,
damaged files reported with their path, one run per folder, and the folder checked before step one."""
import errno
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import pdlearn as pdl
from factories import make_mlp, moons
from pdlearn import checkpoints
from pdlearn.checkpoints import CheckpointError, fingerprint, load_checkpoint, save_checkpoint

SCHED = pdl.CosineSchedule()


def train(path, data=None, net=None, sched=SCHED, steps=6, **kw):
    return pdl.train_diffusion(net or make_mlp(), moons(64) if data is None else data, sched, steps=steps,
                               batch_size=16, checkpoint=str(path), checkpoint_every=3, progress=False, **kw)


# ---------------------------------------------------------------- identity by value

def test_fingerprints_see_every_value():
    a = torch.zeros(5000, dtype=torch.long)
    b = a.clone()
    b[2500] = 1
    assert repr(a) == repr(b) and fingerprint(a) != fingerprint(b)  # repr abbreviates; the digest does not
    assert fingerprint(1) != fingerprint(1.0) != fingerprint("1")
    assert fingerprint(pdl.LinearBetaSchedule(beta_end=0.05)) != fingerprint(pdl.LinearBetaSchedule())
    assert fingerprint(pdl.CosineSchedule()) == fingerprint(pdl.CosineSchedule())
    assert fingerprint({"y": a, "w": 2.0}) == fingerprint({"w": 2.0, "y": a.clone()})
    with pytest.raises(TypeError, match="identity"):
        fingerprint(object())


@pytest.mark.parametrize("change, setting", [
    (dict(data=pdl.data.toy("rings", n=64, seed=0)), "data"),
    (dict(net=make_mlp(prediction="x")), "predicts"),
    (dict(sched=pdl.LinearBetaSchedule(beta_end=0.05)), "schedule"),
    (dict(weighting="x"), "weighting"),
])
def test_a_resume_with_another_identity_is_refused_by_name(tmp_path, change, setting):
    kw = dict(sched=pdl.LinearBetaSchedule()) if "sched" in change else {}
    train(tmp_path / "run.pt", **kw)
    with pytest.raises(ValueError, match=setting):
        train(tmp_path / "run.pt", resume=True, **change)


def test_labels_that_share_a_repr_are_different_runs(tmp_path):
    x = torch.randn(2000, 2)
    y1 = torch.zeros(2000, dtype=torch.long)
    y2 = y1.clone()
    y2[1000] = 1
    net = make_mlp(num_classes=2)
    train(tmp_path / "run.pt", data=x, net=net, labels=y1)
    with pytest.raises(ValueError, match="labels"):
        train(tmp_path / "run.pt", data=x, net=make_mlp(num_classes=2), labels=y2, resume=True)


# ---------------------------------------------------------------- damaged files

def test_truncated_empty_and_bit_flipped_checkpoints_are_named(tmp_path):
    path = tmp_path / "run.pt"
    train(path)
    raw = path.read_bytes()
    for name, damaged in (("truncated", raw[: len(raw) // 2]), ("empty", b"")):
        bad = tmp_path / f"{name}.pt"
        bad.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=rf"{bad}.*damaged.*Delete it"):
            load_checkpoint(str(bad))
    state = torch.load(path, weights_only=True)
    state["model"]["inp.weight"][0, 0] += 1e-3  # as a flipped bit in the stored weights would
    torch.save(state, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match="does not match the digest"):
        load_checkpoint(str(tmp_path / "flipped.pt"))
    with pytest.raises(CheckpointError, match="damaged"):  # and a resume says so before training
        train(tmp_path / "flipped.pt", resume=True)


def test_a_foreign_file_and_a_truncated_record_are_named(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a pdlearn checkpoint"):
        load_checkpoint(str(tmp_path / "foreign.pt"))
    (tmp_path / "round1.json").write_text('{"round": 1, "wall_s": 3.')
    with pytest.raises(CheckpointError, match=r"round1.json.*damaged"):
        checkpoints.read_json(str(tmp_path / "round1.json"))


# ---------------------------------------------------------------- safe writes

def test_a_full_disk_says_so_and_leaves_no_partial_file(tmp_path, monkeypatch):
    def full(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    with pytest.raises(CheckpointError, match="the disk is full"):
        save_checkpoint(str(tmp_path / "run.pt"), {"step": 1})
    assert os.listdir(tmp_path) == []


def test_too_little_room_is_found_before_the_first_step(tmp_path, monkeypatch):
    calls = []
    usage = checkpoints.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: usage._replace(free=1000))

    def loss_fn(net, gen):
        calls.append(1)
        return net(torch.randn(4, 2), torch.rand(4)).pow(2).mean()

    with pytest.raises(CheckpointError, match="MB free"):
        pdl.fit(make_mlp(), loss_fn, 5, checkpoint=str(tmp_path / "run.pt"), progress=False)
    assert calls == []  # no training was wasted


def test_an_unwritable_folder_is_found_before_the_first_step(tmp_path, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    def loss_fn(net, gen):
        calls.append(1)
        return net(torch.randn(4, 2), torch.rand(4)).pow(2).mean()

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", refuse)  # as a read-only folder answers (root ignores chmod)
    with pytest.raises(CheckpointError, match=rf"cannot write checkpoints in {tmp_path / 'ro'}.*read-only"):
        pdl.fit(make_mlp(), loss_fn, 5, checkpoint=str(tmp_path / "ro" / "run.pt"), progress=False)
    assert calls == []
    (tmp_path / "a_file").write_text("")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="cannot write checkpoints"):  # a file where the folder should be
        pdl.fit(make_mlp(), loss_fn, 5, checkpoint=str(tmp_path / "a_file" / "run.pt"), progress=False)


HOLD = """
import sys, time
from pdlearn.checkpoints import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_a_second_run_on_a_held_folder_stops_at_once_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        began = time.perf_counter()
        with pytest.raises(CheckpointError, match=rf"another run is using the checkpoint folder.*process {holder.pid}"):
            train(tmp_path / "run.pt")
        assert time.perf_counter() - began < 5
    finally:
        holder.kill()
        holder.wait()
    net = train(tmp_path / "run.pt")  # a killed run's lock goes with its process
    assert len(net.history["loss"]) == 6


WRITER = """
import sys, torch
from pdlearn.checkpoints import save_checkpoint
for i in range(15):
    save_checkpoint(sys.argv[1], {"writer": int(sys.argv[2]), "i": i, "w": torch.full((20000,), float(sys.argv[2]))})
"""


@pytest.mark.slow
def test_concurrent_writers_of_one_path_never_leave_a_broken_or_mixed_file(tmp_path):
    path = str(tmp_path / "run.pt")
    save_checkpoint(path, {"writer": -1, "i": 0, "w": torch.full((20000,), -1.0)})
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(k)]) for k in range(3)]
    reads = 0
    while any(w.poll() is None for w in writers):
        state = load_checkpoint(path)  # raises on a broken file; the digest catches a mixed one
        assert torch.equal(state["w"], torch.full((20000,), float(state["writer"])))
        reads += 1
    assert all(w.returncode == 0 for w in writers) and reads > 0
    assert not list(tmp_path.glob("*.tmp"))


KILLED_RECORD = """
import os, sys
import pdlearn as pdl
from pdlearn import checkpoints, distill
real = checkpoints._atomic_write
def dying(path, write):
    if path.endswith("-round2.json"):  # killed while writing the record of round 2
        import io
        buf = io.BytesIO(); write(buf)
        with open(path + ".killed.tmp", "wb") as f:
            f.write(buf.getvalue()[:5])
        os._exit(9)
    real(path, write)
checkpoints._atomic_write = dying
x = pdl.data.toy("moons", n=256, seed=0)
import torch; torch.manual_seed(0)
net = pdl.models.MLPDenoiser(width=16, depth=1)
pdl.progressive_distill(net, x, pdl.CosineSchedule(), start_steps=8, end_steps=1, iters_per_round=6,
                        batch_size=16, checkpoint=sys.argv[1], resume=True, progress=False)
"""


@pytest.mark.slow
def test_a_kill_during_the_record_write_resumes_to_the_same_students(tmp_path):
    kw = dict(start_steps=8, end_steps=1, iters_per_round=6, batch_size=16, progress=False)
    x = pdl.data.toy("moons", n=256, seed=0)
    torch.manual_seed(0)
    reference, _ = pdl.progressive_distill(pdl.models.MLPDenoiser(width=16, depth=1), x, SCHED, **kw)
    ckpt = str(tmp_path / "pd.pt")
    died = subprocess.run([sys.executable, "-c", KILLED_RECORD, ckpt])
    assert died.returncode == 9 and list(tmp_path.glob("*-round2.pt")) and not list(tmp_path.glob("*-round2.json"))
    torch.manual_seed(0)
    resumed, history = pdl.progressive_distill(pdl.models.MLPDenoiser(width=16, depth=1), x, SCHED,
                                               checkpoint=ckpt, resume=True, **kw)
    assert [r["loaded"] for r in history] == [True, False, False]  # round 2 reloads its finished checkpoint
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # the killed run's partial file is swept
    assert json.loads(next(tmp_path.glob("*-round2.json")).read_text())["round"] == 2
