"""Grade submissions in a fresh process, from the pristine checks (as nbgrader's autograder does).

    python -m pdlearn.assignments grade a1 alice.ipynb bob.ipynb
    python -m pdlearn.assignments grade a3 submissions/ --out grades --hidden course_checks.py

For each submission the grader

1. builds a *grading notebook* from the pristine solution notebook
   (book/assignments/solutions/): a first cell that records the library
   (``guard.watch_everything``), then the solution notebook's code cells in order, where
   each solution cell is replaced by the student's code for that task. That code comes from
   the submission's cell with the task's grade_id (or, failing that, the last cell that
   defines the task's function), through ``extract``: function definitions, imports and
   plain assignments only. The submission's check cells and every other cell are never
   used: the pristine ones run instead.
2. executes it in a new Jupyter kernel with ``PDLEARN_GRADING=1`` (so ``checks.hidden`` runs
   the built-in hidden checks) and, with ``--hidden``, an instructor's module of more.
3. scores it: a task is a solution cell and the check cells that follow it; a check cell
   that runs without error earns its nbgrader points. A task whose code is tampering
   (``extract``) scores zero, and so does every check that fails, with the check's message.

It prints a score per task with the message of each failed check, and writes
``<out>/<assignment>.json`` and ``<out>/<assignment>.xml`` (JUnit, one test case per check
cell, for a learning-management system).
"""
import argparse
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat

from .assignments import SOLUTIONS, _functions, is_check_cell, is_solution_cell, nbgrader
from .extract import bound_names, extract

PREAMBLE = "from pdlearn.course import guard as _guard\n_guard.watch_everything()"


# ---------------------------------------------------------------- the tasks of an assignment

def find_assignment(name, folder=SOLUTIONS):
    """The solution notebook of assignment ``name``: a path, a file name, or a prefix such as 'a1'."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path
    matches = sorted(p for p in Path(folder).glob("*.ipynb") if p.stem == name or p.stem.startswith(f"{name}_"))
    if len(matches) != 1:
        known = ", ".join(p.stem for p in sorted(Path(folder).glob("*.ipynb"))) or "none"
        raise SystemExit(f"error: no single solution notebook for {name!r} in {folder}/ (known: {known}); run from "
                         "the repository root, or pass --solutions or the notebook's path")
    return matches[0]


def tasks(solution):
    """The tasks of a solution notebook: [{'task', 'functions', 'checks': [(grade_id, points)]}]."""
    found = []
    for cell in solution.cells:
        if is_solution_cell(cell):
            found.append({"task": nbgrader(cell)["grade_id"], "functions": _functions(cell.source), "checks": []})
        elif is_check_cell(cell) and found:
            found[-1]["checks"].append((nbgrader(cell)["grade_id"], float(nbgrader(cell)["points"])))
    return found


def _student_cell(submission, task):
    """The submission's code cell for ``task``: the one with its grade_id, else the last that defines
    one of its functions (never a check cell). None when there is none."""
    code = [c for c in submission.cells if c.cell_type == "code" and not is_check_cell(c)]
    for cell in code:
        if is_solution_cell(cell) and nbgrader(cell).get("grade_id") == task["task"]:
            return cell
    defining = [c for c in code if set(_functions(c.source)) & set(task["functions"])]
    return defining[-1] if defining else None


def grading_notebook(solution, submission):
    """(notebook to execute, {task: {'tampering', 'notes'}}) for one submission (module docstring)."""
    reserved = set()
    for cell in solution.cells:
        if cell.cell_type == "code" and not is_solution_cell(cell):
            reserved |= bound_names(cell.source)
    by_task = {t["task"]: t for t in tasks(solution)}
    nb = nbformat.v4.new_notebook(metadata=solution.metadata)
    nb.cells = [nbformat.v4.new_code_cell(PREAMBLE)]
    report = {}
    for cell in solution.cells:
        if cell.cell_type != "code":
            continue
        source = cell.source
        if is_solution_cell(cell):
            task = by_task[nbgrader(cell)["grade_id"]]
            mine = _student_cell(submission, task)
            if mine is None:
                source, notes, tampering = "", [f"no cell defines {', '.join(task['functions'])}"], None
            else:
                source, notes, tampering = extract(mine.source, reserved, task["functions"])
            report[task["task"]] = {"tampering": tampering, "notes": notes}  # a tampered task scores zero
        new = nbformat.v4.new_code_cell(source or "pass")
        new.metadata["nbgrader"] = dict(nbgrader(cell))
        nb.cells.append(new)
    return nb, report


# ---------------------------------------------------------------- running and scoring

def _message(cell):
    """What went wrong in an executed cell: the check's message, or None when it passed."""
    if cell.get("execution_count") is None:
        return "not run: the grading stopped before this check (a time-out or a crash above)"
    for out in cell.outputs:
        if out.output_type == "error":
            return out.evalue if out.ename == "CheckFailed" or out.ename.endswith(("Yourself", "Tampered")) \
                else f"{out.ename}: {out.evalue}"
    return None


def run(nb, workdir, timeout=600):
    """Execute the grading notebook in a new kernel; returns (notebook, error or None)."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    except Exception as err:  # a time-out or a dead kernel: the checks after it count as failed
        return nb, f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return nb, None


def grade(solution_path, submission_path, hidden=None, timeout=600, workdir=None):
    """Grade one submission against the solution notebook; returns its result (a dict, see ``main``)."""
    solution = nbformat.read(solution_path, as_version=4)
    result = {"submission": Path(submission_path).name, "score": 0.0, "max_score": 0.0, "error": None, "tasks": []}
    try:
        submission = nbformat.read(submission_path, as_version=4)
    except Exception as err:
        submission, result["error"] = nbformat.v4.new_notebook(), f"not a readable notebook: {err}"
    nb, report = grading_notebook(solution, submission)
    env = {"PDLEARN_GRADING": "1", "PDLEARN_PROGRESS": "summary"}
    if hidden:
        env["PDLEARN_HIDDEN_CHECKS"] = hidden
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment
    began = time.perf_counter()
    try:
        nb, error = run(nb, workdir or Path(submission_path).resolve().parent, timeout)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    result["error"] = result["error"] or error
    result["seconds"] = round(time.perf_counter() - began, 1)
    executed = {nbgrader(c).get("grade_id"): c for c in nb.cells if nbgrader(c)}
    for task in tasks(solution):
        info = report[task["task"]]
        entry = {"task": task["task"], "score": 0.0, "max_score": 0.0, "tampering": info["tampering"],
                 "notes": info["notes"], "checks": []}
        for grade_id, points in task["checks"]:
            message = _message(executed[grade_id])
            if info["tampering"]:
                message = f"tampering: the cell of `{task['task']}` holds {info['tampering']}; the task scores zero"
            entry["checks"].append({"check": grade_id, "points": points, "passed": message is None,
                                    "message": message or ""})
            entry["max_score"] += points
            entry["score"] += points if message is None else 0.0
        result["tasks"].append(entry)
        result["score"] += entry["score"]
        result["max_score"] += entry["max_score"]
    return result


# ---------------------------------------------------------------- reports

def _points(x):
    return f"{x:g}"


def print_result(result, file=sys.stdout):
    print(f"{result['submission']}: {_points(result['score'])}/{_points(result['max_score'])}"
          f"  ({result.get('seconds', 0):.0f} s)", file=file)
    if result["error"]:
        print(f"    grading stopped: {result['error']}", file=file)
    for task in result["tasks"]:
        print(f"    {task['task']:<20} {_points(task['score']):>3}/{_points(task['max_score']):<3}", file=file)
        for check in task["checks"]:
            if not check["passed"]:
                print(f"        {check['check']}: {check['message']}", file=file)
        for note in task["notes"]:
            print(f"        note: {note}", file=file)


def junit(assignment, results):
    """The results as JUnit XML: a test suite per submission, a test case per check cell."""
    suites = ET.Element("testsuites", name=assignment)
    for result in results:
        checks = [(t, c) for t in result["tasks"] for c in t["checks"]]
        suite = ET.SubElement(suites, "testsuite", name=Path(result["submission"]).stem, tests=str(len(checks)),
                              failures=str(sum(not c["passed"] for _, c in checks)), errors="0",
                              time=str(result.get("seconds", 0)))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="score", value=_points(result["score"]))
        ET.SubElement(props, "property", name="max_score", value=_points(result["max_score"]))
        for task, check in checks:
            case = ET.SubElement(suite, "testcase", classname=f"{Path(result['submission']).stem}.{task['task']}",
                                 name=check["check"], time="0")
            ET.SubElement(case, "properties").append(ET.Element("property", name="points",
                                                                  value=_points(check["points"])))
            if not check["passed"]:
                ET.SubElement(case, "failure", message=check["message"][:500]).text = check["message"]
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def submissions(paths):
    """The notebooks to grade: each path, or every .ipynb directly inside a folder, in name order."""
    found = []
    for path in map(Path, paths):
        found += sorted(path.glob("*.ipynb")) if path.is_dir() else [path]
    return found


def _hidden(spec):
    """A hidden-checks module given as a name or a .py file (whose folder goes on PYTHONPATH)."""
    if not spec or not spec.endswith(".py"):
        return spec
    path = Path(spec).resolve()
    if not path.exists():
        raise SystemExit(f"error: --hidden {spec}: no such file")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path.parent), os.environ.get("PYTHONPATH")]))
    return path.stem


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pdlearn.assignments grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", help="a1 ... a5, the stem of a solution notebook, or its path")
    parser.add_argument("submissions", nargs="+", help="submitted notebooks, or folders of them")
    parser.add_argument("--out", default="grades", help="folder for <assignment>.json and .xml (default: grades/)")
    parser.add_argument("--hidden", help="an instructor's module of hidden checks: a module name or a .py file")
    parser.add_argument("--solutions", default=str(SOLUTIONS), help=f"folder of solution notebooks ({SOLUTIONS})")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default: 600)")
    args = parser.parse_args(argv)
    solution = find_assignment(args.assignment, args.solutions)
    todo = submissions(args.submissions)
    if not todo:
        raise SystemExit("error: no submitted notebooks found")
    hidden = _hidden(args.hidden)
    print(f"grading {solution.stem}: {len(todo)} submission{'s' * (len(todo) != 1)}", flush=True)
    results = []
    for path in todo:
        results.append(grade(solution, path, hidden=hidden, timeout=args.timeout))
        print_result(results[-1])
        sys.stdout.flush()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"assignment": solution.stem, "max_score": results[0]["max_score"], "submissions": results}
    (out / f"{solution.stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / f"{solution.stem}.xml").write_text(junit(solution.stem, results) + "\n")
    print(f"wrote {out / (solution.stem + '.json')} and {out / (solution.stem + '.xml')}")
    return 0
