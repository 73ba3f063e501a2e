"""Course assignments: the generator of student copies, and proof that the checks bite.

The solution notebooks (book/assignments/solutions/) run under nbval with the rest of the book;
the student copies (book/assignments/) are what the generator makes of them. Here: the committed
copies are up to date, every copy, executed, fails exactly at its check cells (with a CheckFailed
that names the function), the generator is idempotent, and each check rejects typical wrong
answers and library short-cuts with a message that says what is wrong.
"""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

import pdlearn as pdl
from pdlearn import assignments, checks
from pdlearn.checks import CheckFailed

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "book" / "assignments" / "solutions").glob("*.ipynb"))
STUDENT = ROOT / "book" / "assignments"


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ---------------------------------------------------------------- the solution notebooks

def test_there_are_five_assignments_with_solutions_and_checks():
    assert len(SOLUTIONS) >= 5
    for path in SOLUTIONS:
        nb = nbformat.read(path, as_version=4)
        cells = code_cells(nb)
        solutions = [c for c in cells if assignments.BEGIN in c.source]
        check_cells = [c for c in cells if assignments.is_check_cell(c)]
        assert solutions and check_cells, f"{path.name}: needs solution regions and # CHECK cells"
        assert len(check_cells) >= len(solutions), f"{path.name}: every task needs a check cell"
        for cell in check_cells:
            assert "checks." in cell.source, f"{path.name}: a check cell that calls no check:\n{cell.source}"


def test_the_committed_student_copies_are_what_the_generator_makes():
    assert sorted(p.name for p in STUDENT.glob("*.ipynb")) == [p.name for p in SOLUTIONS]
    assert assignments.stale_copies(SOLUTIONS, STUDENT) == [], "run python -m pdlearn.assignments"
    for path in STUDENT.glob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


# ---------------------------------------------------------------- the generator

def solution_notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A title")]
    for i, source in enumerate(sources, 1):
        out = nbformat.v4.new_output("stream", name="stdout", text="stored output\n")
        nb.cells.append(nbformat.v4.new_code_cell(source, execution_count=i, outputs=[out]))
    return assignments.mark(nb)


def test_student_copy_replaces_solutions_by_stubs_and_clears_outputs():
    nb = solution_notebook(
        "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nz = 1",
        "# CHECK\nassert f(1) == 2")
    copy = assignments.student_copy(nb)
    define, check = code_cells(copy)
    assert define.source == ("def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()"
                             "\n\nz = 1")
    assert define.metadata["nbgrader"]["solution"] and check.metadata["nbgrader"]["grade"]
    assert check.metadata["editable"] is False
    assert check.source == "# CHECK\nassert f(1) == 2"
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells(copy))
    assert code_cells(nb)[0].outputs, "the solution notebook itself must stay untouched"
    namespace = {}
    exec(define.source, namespace)  # the defining cell still runs; calling f raises
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_unbalanced_markers_are_refused(source, message):
    with pytest.raises(assignments.MarkerError, match=message):
        assignments.student_copy(solution_notebook(source))


def test_a_solution_region_needs_a_solution_cell():
    nb = solution_notebook("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    nb.cells[1].metadata.pop("nbgrader")
    with pytest.raises(assignments.MarkerError, match="not marked"):
        assignments.student_copy(nb)


def test_a_check_cell_may_not_hold_a_solution():
    with pytest.raises(assignments.MarkerError, match="check cell"):
        assignments.student_copy(solution_notebook("# CHECK\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION"))


def test_generator_is_idempotent(tmp_path):
    first = assignments.write_student_copies(SOLUTIONS, tmp_path / "a")
    again = assignments.write_student_copies(SOLUTIONS, tmp_path / "b")
    for a, b in zip(first, again):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert assignments.BEGIN not in a.read_text() and assignments.END not in a.read_text()


def test_command_line_writes_the_copies(tmp_path, monkeypatch, capsys):
    # the writing in this process (main), the module's entry point once in a subprocess (--check)
    out = tmp_path / "student"
    monkeypatch.chdir(ROOT)
    assert assignments.main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.count("wrote ") == len(SOLUTIONS)
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in SOLUTIONS]
    check = subprocess.run([sys.executable, "-m", "pdlearn.assignments", "--check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "up to date" in check.stdout, check.stderr
    bad = tmp_path / "bad.ipynb"
    nbformat.write(solution_notebook("### BEGIN SOLUTION\nx = 1"), bad)
    with pytest.raises(SystemExit, match="never closed"):
        assignments.main(["--out", str(out), str(bad)])


# ---------------------------------------------------------------- student copies fail at their checks

@pytest.mark.slow
def test_student_copies_fail_exactly_at_their_check_cells(tmp_path, monkeypatch):
    monkeypatch.delenv(checks.HIDDEN_ENV, raising=False)
    monkeypatch.setenv("PDLEARN_BUDGET", "smoke")
    for path in assignments.write_student_copies(SOLUTIONS, tmp_path):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        cells = code_cells(nb)
        failed = {i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.outputs)}
        check_cells = {i for i, c in enumerate(cells) if assignments.is_check_cell(c)}
        assert failed == check_cells, (f"{path.name}: cells that failed {sorted(failed)}, check cells "
                                       f"{sorted(check_cells)}")
        for i in check_cells:
            error = next(o for o in cells[i].outputs if o.output_type == "error")
            assert error.ename == "CheckFailed", f"{path.name} cell {i}: {error.ename}: {error.evalue}"
            assert "is not written yet" in error.evalue, error.evalue


# ---------------------------------------------------------------- the checks accept right answers ...

def q_sample(x, t, sched, eps):
    alpha, sigma = sched.alpha_sigma(t)
    return alpha[:, None] * x + sigma[:, None] * eps


def test_checks_accept_answers_written_out():
    checks.check_forward(q_sample)
    checks.check_v_target(lambda x, eps, a, s: a * eps - s * x)

    def sampler(net, sched, z1, steps):
        times, z = sched.grid(steps), z1
        for t, s in zip(times[:-1], times[1:]):
            x_hat, eps_hat = pdl.predict(net, z, float(t), sched)
            alpha, sigma = sched.alpha_sigma(s)
            z = alpha.float() * x_hat + sigma.float() * eps_hat
        return z

    checks.check_ddim_sampler(sampler)


@pytest.mark.parametrize("check, shortcut", [
    (checks.check_forward, lambda x, t, sched, eps: pdl.q_sample(x, t, sched, eps)),
    (checks.check_loss, lambda net, x, t, eps, sched: pdl.diffusion_loss(net, x, sched, t=t, eps=eps)),
    (checks.check_ddim_sampler, lambda net, sched, z1, steps: pdl.ddim_sample(net, sched, z=z1, steps=steps)),
    (checks.check_inversion, lambda net, sched, x, steps: pdl.ddim_invert(net, sched, x, steps=steps)),
    (checks.check_distill_target, lambda teacher, z, t, sched, steps:
        pdl.distill.distill_target(teacher, z, t, sched, steps)[0]),
    (checks.check_guided_x_hat, lambda net, z, t, sched, y, w: pdl.guidance.guided_predict(net, z, t, sched, y, w)[0]),
    (checks.check_stochastic_sampler, lambda net, sched, z1, steps, randn:
        pdl.guidance.stochastic_sample(net, sched, z=z1, steps=steps)),
])
def test_library_short_cuts_are_refused(check, shortcut):
    with pytest.raises(checks.ImplementYourself, match="implement this yourself"):
        check(shortcut)


# ---------------------------------------------------------------- ... and reject wrong ones, saying why

def test_forward_check_names_the_mistake():
    def squared(x, t, sched, eps):
        alpha, sigma = sched.alpha_sigma(t)
        return alpha[:, None] ** 2 * x + sigma[:, None] ** 2 * eps

    with pytest.raises(CheckFailed, match="not squared"):
        checks.check_forward(squared)
    with pytest.raises(CheckFailed, match="shape"):
        checks.check_forward(lambda x, t, sched, eps: x[:, :1])
    with pytest.raises(CheckFailed, match="ValueError: boom"):
        checks.check_forward(lambda *a: (_ for _ in ()).throw(ValueError("boom")))


def test_v_and_loss_checks_catch_sign_and_reduction_mistakes():
    with pytest.raises(CheckFailed, match="-v"):
        checks.check_v_target(lambda x, eps, a, s: s * x - a * eps)

    def summed(net, x, t, eps, sched):
        z = pdl.q_sample(x, t, sched, eps)
        alpha, sigma = sched.alpha_sigma(t)
        return (net(z, t) - (alpha[:, None] * eps - sigma[:, None] * x)).pow(2).sum(1).mean()

    with pytest.raises(CheckFailed, match="sum over the data"):
        checks.check_loss(summed)
    with pytest.raises(CheckFailed, match="without gradient"):
        checks.check_loss(lambda net, x, t, eps, sched: summed(net, x, t, eps, sched).detach())


def test_ddim_checks_catch_wrong_times():
    def step_at_s(net, z, t, s, sched):
        x_hat, eps_hat = pdl.predict(net, z, s if s > 0 else t, sched)
        alpha, sigma = sched.alpha_sigma(torch.tensor(s))
        return alpha * x_hat + sigma * eps_hat

    with pytest.raises(CheckFailed, match="unchanged"):
        checks.check_ddim_step(step_at_s)


    def extra_step(net, sched, z1, steps):
        times, z = sched.grid(steps + 1), z1
        for t, s in zip(times[:-1], times[1:]):
            x_hat, eps_hat = pdl.predict(net, z, float(t), sched)
            alpha, sigma = sched.alpha_sigma(s)
            z = alpha.float() * x_hat + sigma.float() * eps_hat
        return z

    with pytest.raises(CheckFailed, match="N \\+ 1 times"):
        checks.check_ddim_sampler(extra_step)


def test_distillation_checks_catch_wrong_targets_and_a_trained_teacher():
    def two_steps(teacher, z, t, sched, steps):  # returns z_t'' instead of x~
        for dt in (0.5 / steps, 0.5 / steps):
            x_hat, eps_hat = pdl.predict(teacher, z, t, sched)
            alpha, sigma = (c[:, None].float() for c in sched.alpha_sigma(t - dt))
            z, t = alpha * x_hat + sigma * eps_hat, t - dt
        return z

    with pytest.raises(CheckFailed, match="ONE step"):
        checks.check_distill_target(two_steps)

    def on_the_data(student, teacher, x, t, eps, sched, steps):
        z = q_sample(x, t, sched, eps)
        x_hat, eps_hat = pdl.predict(student, z, t, sched)
        return torch.maximum((x - x_hat).pow(2).mean(1), (eps - eps_hat).pow(2).mean(1)).mean()

    with pytest.raises(CheckFailed, match="target is the teacher"):
        checks.check_distill_loss(on_the_data)
    teacher = checks.tiny_net(0)
    with pytest.raises(CheckFailed, match="changed the teacher"):
        checks.check_one_round(lambda teacher, *a: teacher, teacher, torch.randn(64, 2), pdl.CosineSchedule(), 2, 1)
    with pytest.raises(CheckFailed, match="within"):  # an untrained copy is no closer than the teacher
        checks.check_one_round(lambda teacher, *a: checks.tiny_net(0), teacher, torch.randn(64, 2),
                               pdl.CosineSchedule(), 2, 20)


@pytest.mark.slow
def test_training_checks_catch_a_loss_whose_gradient_is_wrong():
    sched, data = pdl.CosineSchedule(), pdl.data.toy("moons", n=1_000, seed=0)

    def right(net, x, t, eps, sched):
        alpha, sigma = sched.alpha_sigma(t)
        z = alpha[:, None] * x + sigma[:, None] * eps
        return (net(z, t) - (alpha[:, None] * eps - sigma[:, None] * x)).pow(2).mean()

    def frozen(net, x, t, eps, sched):  # the right value, no gradient into the network
        return right(net, x, t, eps, sched).detach() + 0 * net(x, t).sum()

    held_out = pdl.data.toy("moons", n=1_000, seed=1)
    checks.check_training(right, data, sched, 150, held_out)
    with pytest.raises(CheckFailed, match="does not train"):
        checks.check_training(frozen, data, sched, 150, held_out)


def test_guidance_checks_catch_the_other_convention_and_an_unguided_target():
    def scale_convention(net, z, t, sched, y, w):  # w x_c + (1 - w) x_u
        x_c, _ = pdl.predict(net, z, t, sched, y=y)
        x_u, _ = pdl.predict(net, z, t, sched, y=None)
        w = torch.as_tensor(w)
        w = w[:, None] if w.ndim else w
        return w * x_c + (1 - w) * x_u

    with pytest.raises(CheckFailed, match="convention"):
        checks.check_guided_x_hat(scale_convention)

    def unguided(student, teacher, x, t, eps, y, w, sched):
        z = pdl.q_sample(x, t, sched, eps)
        with torch.no_grad():
            target = teacher(z, t, y=y)
        return (student(z, t, y=y, w=w) - target).pow(2).mean()

    with pytest.raises(CheckFailed, match="unguided target"):
        checks.check_stage1_loss(unguided)


# ---------------------------------------------------------------- hidden instructor checks

def test_hidden_checks_run_only_when_grading(tmp_path, monkeypatch):
    (tmp_path / "course_checks_h7.py").write_text(
        "def a1_forward(forward):\n"
        "    import torch\n"
        "    assert forward(torch.ones(1, 2), torch.zeros(1), __import__('pdlearn').CosineSchedule(),\n"
        "                   torch.zeros(1, 2)).sum() == 2, 'hidden: z_0 must be x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(checks.HIDDEN_ENV, raising=False)
    monkeypatch.delenv(checks.GRADING_ENV, raising=False)
    assert checks.hidden("a1_forward", lambda *a: None) is None  # not grading: nothing runs
    monkeypatch.setenv(checks.GRADING_ENV, "1")  # grading: the built-in hidden checks run
    checks.hidden("a1_forward", q_sample)
    with pytest.raises(CheckFailed, match="forward"):
        checks.hidden("a1_forward", lambda x, t, sched, eps: x)
    monkeypatch.delenv(checks.GRADING_ENV)
    monkeypatch.setenv(checks.HIDDEN_ENV, "course_checks_h7")
    checks.hidden("a1_forward", q_sample)
    checks.hidden("no_such_check", q_sample)  # cells without a hidden check pass
    with pytest.raises(AssertionError, match="hidden: z_0 must be x"):
        checks.hidden("a1_forward", lambda x, t, sched, eps: 0 * x)
    monkeypatch.setenv(checks.HIDDEN_ENV, "no_such_module_h7")
    with pytest.raises(CheckFailed, match="PYTHONPATH"):
        checks.hidden("a1_forward", q_sample)
