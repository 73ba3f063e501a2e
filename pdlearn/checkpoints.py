"""Checkpoints: one file format, safe writes, a run's identity, and the folder lock.

A checkpoint is one dict (nanoGPT's habit): the network, its EMA copy, the optimizer,
the step, every random generator, the loss history, the architecture and the run's
settings. This module is the only place that reads or writes one:

    save_checkpoint / load_checkpoint   atomic writes (a per-process temporary file in the
                                        same folder, moved with os.replace), a digest of the
                                        whole content checked on load, clear errors that
                                        name the file and the fix
    write_json / read_json              the same for the small records beside them
    architecture, check_same_architecture
    fingerprint                         a digest of settings, tensors and networks, from their
                                        values (never from repr, which abbreviates tensors)
    identity                            the settings of a run that change its result
    run_file                            the name of a run's file: <stem>-<fingerprint><suffix>
    FolderLock / owning                 one run at a time per checkpoint folder
    check_writable                      the folder is writable and has room, before step one

A damaged file is never retrained over silently: the error names it and says what to do
(delete it, or start afresh with ``resume=False`` / ``--fresh``), because a damaged file
can mean a failing disk, and retraining a round can cost hours at the gpu budget.
"""
import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import types

import numpy as np
import torch

FORMAT = "pdlearn-checkpoint-2"
OLD_FORMATS = ("pdlearn-checkpoint-1",)  # loadable, without a digest to check
LOCK_NAME = ".pdlearn.lock"
OWNER_NAME = ".pdlearn.owner.json"


class CheckpointError(ValueError):
    """A checkpoint or record is damaged, foreign or cannot be written; the message names the file."""


# ---------------------------------------------------------------- identity

def _update(h, thing):
    """Feed ``thing`` to the hash ``h`` by value, with a tag per kind so that 1, 1.0 and '1' differ."""
    if thing is None or isinstance(thing, (bool, np.bool_)):
        h.update(f"<{thing!r}>".encode())
    elif isinstance(thing, (int, np.integer)):
        h.update(f"i{int(thing)};".encode())
    elif isinstance(thing, (float, np.floating)):
        h.update(f"f{float(thing).hex()};".encode())
    elif isinstance(thing, str):
        h.update(f"s{len(thing)}:{thing}".encode())
    elif isinstance(thing, bytes):
        h.update(b"b%d:" % len(thing) + thing)
    elif isinstance(thing, torch.Tensor):
        t = thing.detach().cpu().contiguous()
        h.update(f"t{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(thing, np.ndarray):
        _update(h, torch.from_numpy(np.ascontiguousarray(thing)))
    elif isinstance(thing, dict):
        h.update(f"d{len(thing)}{{".encode())
        for key in sorted(thing, key=repr):
            _update(h, key)
            _update(h, thing[key])
        h.update(b"}")
    elif isinstance(thing, (list, tuple)):
        h.update(f"l{len(thing)}[".encode())
        for item in thing:
            _update(h, item)
        h.update(b"]")
    elif isinstance(thing, torch.nn.Module):
        _update(h, {"architecture": architecture(thing), "weights": thing.state_dict()})
    elif isinstance(thing, (types.FunctionType, types.BuiltinFunctionType, type)):
        h.update(f"fn:{thing.__module__}.{thing.__qualname__}".encode())  # by name: repr holds an address
    elif hasattr(thing, "identity"):
        _update(h, {"class": type(thing).__name__, "identity": thing.identity()})
    elif hasattr(thing, "alpha_sigma"):
        _update(h, schedule_identity(thing))
    else:
        raise TypeError(f"cannot fingerprint a {type(thing).__name__}: give it an identity() method that returns "
                        "its settings as plain values, or pass those settings instead")


def fingerprint(*things, length=8):
    """A short hex digest of settings, tensors, networks and schedules, computed from their values.

    Tensors count by every byte (``repr`` abbreviates tensors of more than 1,000 entries, so
    two different label tensors could share a repr), networks by architecture and weights,
    schedules by their (alpha, sigma) on a fine grid, functions by qualified name, other
    objects through their ``identity()``."""
    h = hashlib.sha256()
    for thing in things:
        _update(h, thing)
    return h.hexdigest()[:length]


def schedule_identity(sched):
    """A schedule's identity: its class and its (alpha_t, sigma_t) at t = 0, 1/1000, ..., 1 in
    float64, so that two schedules are the same run setting exactly when they are the same
    function (``repr(LinearBetaSchedule(beta_end=0.05))`` leaves the betas out; this does not)."""
    t = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    alpha, sigma = sched.alpha_sigma(t)
    return {"class": type(sched).__name__,
            "values": fingerprint(torch.as_tensor(alpha, dtype=torch.float64),
                                  torch.as_tensor(sigma, dtype=torch.float64), length=16)}


def data_identity(data):
    """A data set's identity: its shape, dtype and a digest of its values (a tensor), or, for a
    DataLoader, its dataset's class and length (the contents of a loader are not read)."""
    if isinstance(data, torch.utils.data.DataLoader):
        dataset = data.dataset
        size = len(dataset) if hasattr(dataset, "__len__") else None
        return {"loader": type(dataset).__name__, "len": size, "batch_size": data.batch_size}
    return {"shape": list(data.shape), "dtype": str(data.dtype), "values": fingerprint(data, length=16)}


def architecture(net):
    """A description of a network's architecture: class name, ``prediction``, ``config`` (when the
    network has them) and parameter shapes. Networks with the same description load each other's
    weights and mean the same thing by their output."""
    desc = {"class": type(net).__name__,
            "shapes": {k: list(v.shape) for k, v in net.state_dict().items()}}
    if getattr(net, "prediction", None) is not None:
        desc["prediction"] = net.prediction
    config = getattr(net, "config", None)
    if isinstance(config, dict):
        desc["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    return desc


def check_same_architecture(expected, found, what="checkpoint"):
    """Raise a clear error when two ``architecture`` descriptions differ."""
    if expected == found:
        return
    if expected["class"] != found["class"]:
        raise ValueError(f"the {what} is for a {found['class']}, but the network is a {expected['class']}; "
                         "build the network the checkpoint was trained with, or start afresh (resume=False)")
    if expected.get("prediction") != found.get("prediction"):
        raise ValueError(f"the {what} predicts {found.get('prediction')!r}, but the network predicts "
                         f"{expected.get('prediction')!r}: the same weights would mean something else; build the "
                         f"network with prediction={found.get('prediction')!r}, or start afresh (resume=False)")
    e, f = expected["shapes"], found["shapes"]
    diff = [k for k in sorted(set(e) | set(f)) if e.get(k) != f.get(k)][:3]
    if not diff:
        ec, fc = expected.get("config", {}), found.get("config", {})
        keys = [k for k in sorted(set(ec) | set(fc)) if ec.get(k) != fc.get(k)]
        detail = "; ".join(f"{k}: network {ec.get(k)!r} vs {what} {fc.get(k)!r}" for k in keys)
        raise ValueError(f"the {what} comes from a network built with other settings ({detail}); build it with "
                         "the settings it was trained with, or start afresh (resume=False)")
    detail = "; ".join(f"{k}: network {e.get(k)} vs {what} {f.get(k)}" for k in diff)
    raise ValueError(f"the {what} comes from a different architecture ({detail}); build the network with the "
                     "sizes it was trained with, or start afresh (resume=False or delete the file)")


def identity_differences(expected, found):
    """The keys of two run identities (dicts of settings) whose values differ."""
    return [k for k in sorted(set(expected) | set(found), key=str) if expected.get(k) != found.get(k)]


def run_file(checkpoint, *identity, suffix=".pt"):
    """The file of one run: ``<checkpoint minus .pt>-<fingerprint(identity)><suffix>``, so that a
    run with other settings, data or teacher gets a file of its own instead of resuming a stale one."""
    stem = checkpoint[:-3] if checkpoint.endswith(".pt") else checkpoint
    return f"{stem}-{fingerprint(*identity)}{suffix}"


# ---------------------------------------------------------------- safe writes

def _disk_full(path, err):
    folder = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(folder).free if os.path.isdir(folder) else 0
    return CheckpointError(f"the disk is full: could not write {path} ({free / 1e6:.0f} MB free in {folder}); free "
                           "some space or point the checkpoints elsewhere (PDLEARN_CHECKPOINTS or "
                           "--checkpoint-dir), then run again: training resumes from the last checkpoint")


def _atomic_write(path, write):
    """Run ``write(file_object)`` into a temporary file of this process in path's folder, then move it
    to ``path`` (os.replace is atomic): a crash, a kill or a full disk never leaves a broken ``path``,
    and two processes writing one path never mix their bytes."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    except OSError as err:
        raise _unwritable(folder, err) from err
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, err) from err
        raise


def _unwritable(folder, err):
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return _disk_full(os.path.join(folder, "checkpoint"), err)
    return CheckpointError(f"cannot write checkpoints in {folder} ({type(err).__name__}: {err}); is it read-only, "
                           "or a file rather than a folder? Point the checkpoints at a writable folder "
                           "(PDLEARN_CHECKPOINTS or --checkpoint-dir)")


def write_torch(path, obj):
    """``torch.save(obj)`` to ``path`` atomically (for files of other formats, such as the classifier's)."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path, state):
    """Write the checkpoint dict ``state`` atomically, with its format and a digest of its whole content."""
    state = dict(state, format=FORMAT)
    state.pop("digest", None)
    state["digest"] = fingerprint(state, length=64)
    _atomic_write(path, lambda f: torch.save(state, f))


def _damaged(path, why):
    return CheckpointError(f"{path} is damaged ({why}); it is not retrained over automatically. Delete it (or move "
                           "it away) and run again to retrain from the last good file, or start afresh with "
                           "resume=False (--fresh on the command line)")


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint with ``weights_only=True`` (no code runs on load) and check its digest;
    a damaged, truncated, empty or foreign file raises a ``CheckpointError`` naming it."""
    if os.path.getsize(path) == 0:
        raise _damaged(path, "the file is empty")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, a pickle that wants to run code, ...
        raise _damaged(path, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(state, dict) or state.get("format") not in (FORMAT,) + OLD_FORMATS:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a pdlearn checkpoint (format {found!r}, expected {FORMAT!r}); point "
                              "checkpoint= at a file pdlearn wrote, delete it, or start afresh with resume=False")
    if state["format"] == FORMAT:
        stored = state.pop("digest", None)
        if stored != fingerprint(state, length=64):
            raise _damaged(path, "its content does not match the digest stored with it")
    return state


def write_json(path, record):
    """Write a small record (a dict of plain values) atomically, as checkpoints are written."""
    _atomic_write(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def read_json(path):
    """Read a record written by ``write_json``; a damaged one raises a ``CheckpointError`` naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise _damaged(path, f"not a complete record: {err}") from err


# ---------------------------------------------------------------- the folder: writable, with room, one owner

def check_writable(folder, need_bytes=0):
    """Raise a ``CheckpointError`` before any training if ``folder`` cannot take a checkpoint: it cannot
    be created or written (read-only, or a file), or its disk has less than ``need_bytes`` free."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pdlearn-probe.", suffix=".tmp")
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):  # the folder's owner may have swept it already
            os.remove(probe)
    except OSError as err:
        raise _unwritable(folder, err) from err
    free = shutil.disk_usage(folder).free
    if need_bytes and free < need_bytes:
        raise CheckpointError(f"the disk holding {folder} has {free / 1e6:.0f} MB free, and a checkpoint of this "
                              f"run takes about {need_bytes / 1e6:.0f} MB: free some space or point the checkpoints "
                              "elsewhere (PDLEARN_CHECKPOINTS or --checkpoint-dir) before training")


def checkpoint_bytes(*modules):
    """About how many bytes a checkpoint of these networks takes with AdamW's two moments beside each."""
    return sum(4 * p.numel() * p.element_size() for m in modules for p in m.state_dict().values()) + (1 << 20)


class FolderLock:
    """One run at a time per checkpoint folder: an operating-system lock on ``<folder>/.pdlearn.lock``
    (``filelock``), released when the run ends or its process dies, and a note of the owner (process,
    host, command, start) beside it, so that a second run stops at once and says which run holds the
    folder. Re-entrant within a process: a distillation holds the folder while its rounds train."""

    _held = {}  # folder -> (FileLock, depth) held by this process

    def __init__(self, folder):
        self.folder = os.path.abspath(folder)

    def __enter__(self):
        from filelock import FileLock, Timeout

        lock, depth = self._held.get(self.folder, (None, 0))
        if lock is None:
            check_writable(self.folder)
            lock = FileLock(os.path.join(self.folder, LOCK_NAME))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise CheckpointError(f"another run is using the checkpoint folder {self.folder} ({owner(self.folder)})"
                                      "; wait for it to finish, or give this run a folder of its own "
                                      "(PDLEARN_CHECKPOINTS or --checkpoint-dir)") from None
            write_json(os.path.join(self.folder, OWNER_NAME),
                       {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")})
            for leftover in glob.glob(os.path.join(self.folder, "*.tmp")):  # of runs that were killed mid-write:
                os.remove(leftover)  # no run but this one writes here now, so none of them is being written
        self._held[self.folder] = (lock, depth + 1)
        return self

    def __exit__(self, *exc):
        lock, depth = self._held[self.folder]
        if depth == 1:
            del self._held[self.folder]
            lock.release()
        else:
            self._held[self.folder] = (lock, depth - 1)
        return False


def owner(folder):
    """A sentence naming the run that holds ``folder``'s lock, from the note it left."""
    try:
        note = read_json(os.path.join(folder, OWNER_NAME))
        return f"process {note['pid']} on {note['host']}, started {note['started']}: {note['command']}"
    except (OSError, CheckpointError, KeyError):
        return "a process that left no note"


def owning(checkpoint):
    """The lock of the folder of checkpoint path ``checkpoint`` (a context manager), or a no-op for None."""
    if checkpoint is None:
        return _Nothing()
    return FolderLock(os.path.dirname(os.path.abspath(checkpoint)))


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
