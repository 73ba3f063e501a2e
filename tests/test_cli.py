"""The command line (``python -m pdlearn``) at the smoke budget, in a temporary checkpoint folder:
the protocol runs, resumes to the round and iteration reached, runs under torchrun with two
processes, and bad input gives a clear error and a non-zero exit."""
import glob
import os
import shutil
import subprocess
import sys

import pytest
import torch

import pdlearn.distill
import pdlearn.recipes
from pdlearn.__main__ import main
from pdlearn.train import load_checkpoint

pytestmark = pytest.mark.slow  # it trains or runs the command line: seconds a test

SMOKE = ["--budget", "smoke", "--no-progress"]


def cli(folder, *args):
    return main([*args, *SMOKE, "--checkpoint-dir", str(folder)])


def rounds(folder):
    return sorted(glob.glob(os.path.join(folder, "digits_distill_v-smoke-*-round*.pt")))


@pytest.fixture(autouse=True)
def restore_env(monkeypatch):  # main() sets PDLEARN_CHECKPOINTS and PDLEARN_BUDGET; monkeypatch puts them back
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", "checkpoints")
    monkeypatch.setenv("PDLEARN_BUDGET", os.environ.get("PDLEARN_BUDGET", "smoke"))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    folder, before = tmp_path_factory.mktemp("teacher"), os.environ.get("PDLEARN_CHECKPOINTS")
    assert cli(folder, "teacher") == 0
    if before is None:
        del os.environ["PDLEARN_CHECKPOINTS"]
    else:
        os.environ["PDLEARN_CHECKPOINTS"] = before
    return folder


def with_teacher(teacher_dir, folder):
    os.makedirs(folder, exist_ok=True)
    for f in glob.glob(os.path.join(teacher_dir, "digits_teacher_*")):
        shutil.copy(f, folder)
    return folder


def test_help_documents_the_protocol(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for word in ("teacher", "distill", "evaluate", "--data", "torchrun", "Resume", "floor"):
        assert word in text, word
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = capsys.readouterr().out
    for word in ("--start-steps", "--end-steps", "--iters-per-round", "--checkpoint-dir", "--seed", "--budget"):
        assert word in text, word


def test_the_image_set_comes_from_pdlearn_images(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PDLEARN_IMAGES", "emnist")
    with pytest.raises(SystemExit) as exit_:
        main(["teacher", *SMOKE, "--checkpoint-dir", str(tmp_path)])
    assert exit_.value.code == 2 and "PDLEARN_IMAGES='emnist' is not an image set" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["distill", "--data", "imagenet"], "invalid choice: 'imagenet'"),
    (["distill", "--start-steps", "6", "--end-steps", "4"], "power of two"),
    (["distill", "--iters-per-round", "0"], "must be a positive integer"),
    (["teacher", "--budget", "huge"], "invalid choice: 'huge'"),
])
def test_bad_input_is_a_clear_error(capsys, tmp_path, args, message):
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--checkpoint-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # nothing ran


def test_evaluate_refuses_torchrun(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", *SMOKE, "--checkpoint-dir", str(tmp_path)])
    assert exit_.value.code == 2 and "evaluate runs in one process" in capsys.readouterr().err


def test_bad_input_exits_non_zero_from_the_shell(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pdlearn", "distill", "--start-steps", "12", "--end-steps", "1",
                           "--checkpoint-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "start_steps must be end_steps times a power of two" in done.stderr


def test_a_damaged_checkpoint_is_one_message_naming_it_and_the_fix(teacher_dir, tmp_path, capsys):
    folder = with_teacher(teacher_dir, tmp_path / "damaged")
    (teacher,) = glob.glob(os.path.join(folder, "digits_teacher_*.pt"))
    with open(teacher, "r+b") as f:
        f.truncate(os.path.getsize(teacher) // 2)
    assert cli(folder, "teacher") == 1
    err = capsys.readouterr().err
    assert f"error: {teacher} is damaged" in err and "--fresh" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="damaged"):  # --debug shows where it happened
        cli(folder, "teacher", "--debug")
    assert cli(folder, "teacher", "--fresh") == 0  # --fresh trains it again, over the damaged file
    assert cli(folder, "teacher") == 0


def test_a_held_folder_is_one_message(teacher_dir, tmp_path, capsys):
    from test_checkpoints import HOLD

    folder = with_teacher(teacher_dir, tmp_path / "held")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli(folder, "teacher", "--fresh") == 1
        err = capsys.readouterr().err
        assert f"another run is using the checkpoint folder {folder}" in err and f"process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()


def test_teacher_loads_the_second_time(teacher_dir, capsys):
    assert cli(teacher_dir, "teacher") == 0
    out = capsys.readouterr().out
    assert "budget smoke" in out and str(teacher_dir) in out and "digits_teacher_v_seed0" in out


def test_distill_resumes_to_the_round_and_iteration_reached(teacher_dir, tmp_path, monkeypatch, capsys):
    whole, cut = with_teacher(teacher_dir, tmp_path / "whole"), with_teacher(teacher_dir, tmp_path / "cut")
    options = ["--iters-per-round", "10", "--checkpoint-every", "5"]
    assert cli(whole, "distill", *options) == 0
    assert len(rounds(whole)) == 3  # 8 -> 4 -> 2 -> 1 steps
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(whole))  # the chapter's recipe finds the job's students
    _, history = pdlearn.recipes.image_students(budget_name="smoke", progress=False)
    assert [r["loaded"] for r in history] == [True, True, True]

    loss, calls = pdlearn.distill.distill_loss, []

    def dropped_in_round_three(*args, **kwargs):  # the job is killed at iteration 7 of round 3
        calls.append(1)
        if len(calls) == 2 * 10 + 7:
            raise KeyboardInterrupt
        return loss(*args, **kwargs)

    monkeypatch.setattr(pdlearn.distill, "distill_loss", dropped_in_round_three)
    assert cli(cut, "distill", *options) == 130  # interrupted: it says how to resume, the shell's code for ^C
    assert "run the same command again to resume" in capsys.readouterr().err
    assert load_checkpoint(rounds(cut)[-1])["step"] == 5  # round 3's last checkpoint
    monkeypatch.setattr(pdlearn.distill, "distill_loss", loss)
    capsys.readouterr()
    assert cli(cut, "distill", *options) == 0
    out = capsys.readouterr().out
    assert out.count("(loaded)") == 2 and "round 3: 2 -> 1 steps" in out
    for a, b in zip(rounds(whole), rounds(cut), strict=True):
        assert os.path.basename(a) == os.path.basename(b)
        sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{os.path.basename(a)} differs"


def test_evaluate_prints_fid_beside_its_floor(teacher_dir, tmp_path, capsys):
    folder = with_teacher(teacher_dir, tmp_path)
    assert cli(folder, "evaluate", "--start-steps", "2", "--steps", "1", "4", "--n-eval", "50") == 0
    out = capsys.readouterr().out
    for row in ("teacher, DDIM 1", "teacher, DDIM 4", "student of round 1", "floor (data vs data)", "FID/floor",
                "p > 0.9", "held-out images"):
        assert row in out, row
    assert "nan" not in out.lower()  # the digits classifier reads every row


def test_distill_under_torchrun_with_two_processes(teacher_dir, tmp_path):
    folder = with_teacher(teacher_dir, tmp_path)
    env = dict(os.environ, PDLEARN_BUDGET="smoke", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "pdlearn", "distill", "--start-steps", "4", "--checkpoint-dir", str(folder),
                           "--no-progress"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0 of 2 (gloo, cpu)" in done.stdout and done.stdout.count("pdlearn distill") == 1  # rank 0 prints
    files = rounds(folder)
    assert len(files) == 2 and all(len(load_checkpoint(f)["rngs"]) == 2 for f in files)


def test_the_mnist_protocol_runs_on_files_in_the_mnist_format(tmp_path, monkeypatch, capsys):
    """The gpu budget's data path (28 x 28 IDX files, a UNet sized by the image) end to end,
    on a tiny MNIST written here in its original format; no network."""
    from test_data_images import write_idx_set

    monkeypatch.setenv("PDLEARN_DATA", str(tmp_path / "data"))
    write_idx_set(tmp_path / "data" / "mnist", n_train=48, n_test=8)
    folder = tmp_path / "ckpt"
    assert cli(folder, "distill", "--data", "mnist", "--start-steps", "4", "--iters-per-round", "3") == 0
    assert "mnist" in capsys.readouterr().out
    found = sorted(glob.glob(os.path.join(folder, "mnist_distill_v-smoke-*-round*.pt")))
    assert len(found) == 2 and glob.glob(os.path.join(folder, "mnist_teacher_v_seed0-*"))  # 4 -> 2 -> 1 steps
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(folder))
    teacher, x = pdlearn.recipes.image_teacher("mnist", budget_name="smoke", progress=False)  # loaded
    assert x.shape == (48, 1, 28, 28) and tuple(teacher.sample_shape) == (1, 28, 28)
    student = load_checkpoint(found[-1])["model"]  # the 1-step student has the teacher's architecture
    assert {k: v.shape for k, v in student.items()} == {k: v.shape for k, v in teacher.state_dict().items()}

    # evaluation without a download: FID on the features of a classifier trained on the MNIST files here,
    # at the sizes of --budget, whatever PDLEARN_BUDGET says
    monkeypatch.setenv("PDLEARN_BUDGET", "cpu")
    capsys.readouterr()
    assert cli(folder, "evaluate", "--data", "mnist", "--start-steps", "4", "--iters-per-round", "3",
               "--steps", "2", "--n-eval", "40", "--features", "classifier") == 0
    out = capsys.readouterr().out
    assert "FID on classifier features of n = 40 samples against the mnist test split" in out
    for row in ("teacher, DDIM 2", "student of round 2", "held-out images", "floor (data vs data)"):
        assert row in out, row
    assert "nan" not in out.lower() and glob.glob(os.path.join(folder, "mnist_classifier_*-smoke.pt"))
