"""The student copies of the course assignments, generated from the solution notebooks.

    python -m pdlearn.assignments                 # book/assignments/solutions/*.ipynb -> book/assignments/
    python -m pdlearn.assignments --check         # are the committed student copies up to date?
    python -m pdlearn.assignments --out handout/ book/assignments/solutions/a1_forward_and_loss.ipynb
    python -m pdlearn.assignments mark SOLUTION.ipynb   # write the nbgrader metadata of a new solution notebook

The conventions are nbgrader's (nbgrader.readthedocs.io), so that ``nbgrader
generate_assignment`` on the same solution notebooks gives the same student copies
(tests/test_course_nbgrader.py shows it when nbgrader is installed):

- A *solution cell* carries ``metadata.nbgrader = {solution: true, grade: false, grade_id, ...}``
  and marks its solution with a pair of comment lines, inside a function body::

      ### BEGIN SOLUTION
      ...the solution...
      ### END SOLUTION

  The student copy replaces the region by nbgrader's stub, indented like the BEGIN line:
  ``# YOUR CODE HERE`` and ``raise NotImplementedError()``. The cell that defines the
  function still runs; the check cell that calls it fails with a message from the checks.
- A *check cell* starts with the line ``# CHECK`` and is an nbgrader autograded test cell
  (``grade: true, locked: true, points``). It is copied unchanged.
- Every other code cell is read-only (``locked: true``).

As ``generate_assignment`` does, the copy clears outputs and execution counts, makes
solution cells undeletable and check and read-only cells undeletable and uneditable, and
stores nbgrader's checksum of every marked cell. The same solution always gives the same
bytes, and this module needs nothing but nbformat.
"""
import argparse
import ast
import hashlib
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK = "# CHECK"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # nbgrader's ClearSolutions.code_stub['python']
SOLUTIONS = Path("book", "assignments", "solutions")
STUDENT = Path("book", "assignments")


class MarkerError(ValueError):
    """A solution region or the nbgrader metadata of a cell is not as the conventions want."""


def is_check_cell(cell):
    """A check cell is a code cell whose first line is ``# CHECK``."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK)


def nbgrader(cell):
    """The cell's nbgrader metadata (an empty dict when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution_cell(cell):
    return bool(nbgrader(cell).get("solution"))


def strip_solutions(source, where="cell"):
    """The source with every BEGIN/END SOLUTION region replaced by nbgrader's stub."""
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise MarkerError(f"{where}, line {number}: '{BEGIN}' inside another solution region; "
                                  f"close the first with '{END}'")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.extend(indent + stub for stub in STUB)
        elif marker == END:
            if not inside:
                raise MarkerError(f"{where}, line {number}: '{END}' without a '{BEGIN}' above it")
            inside = False
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:  # nbgrader would take it for a marker
            raise MarkerError(f"{where}, line {number}: a marker must be a line of its own, '{BEGIN}' or '{END}'")
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed; add a line '{END}' after the solution")
    return "\n".join(out)


def checksum(cell):
    """nbgrader's checksum of a marked cell (``nbgrader.utils.compute_checksum``): MD5 of the source,
    the cell type, the grade / solution / locked flags, the grade_id and, for a grade cell, the points."""
    meta = nbgrader(cell)
    grade, solution = bool(meta.get("grade")), bool(meta.get("solution"))
    locked = False if solution else (True if grade else bool(meta.get("locked")))
    h = hashlib.md5()
    for part in (cell.source, cell.cell_type, str(grade), str(solution), str(locked), meta["grade_id"]):
        h.update(part.encode("utf-8"))
    if grade:
        h.update(str(float(meta["points"])).encode("utf-8"))
    return h.hexdigest()


def _check_metadata(nb):
    """Refuse a solution notebook whose cells break the conventions (module docstring)."""
    seen = set()
    for i, cell in enumerate(nb.cells):
        meta = nbgrader(cell)
        has_region = cell.cell_type == "code" and BEGIN in cell.source
        if is_check_cell(cell) and has_region:
            raise MarkerError(f"code cell {i} is a check cell with a solution region; checks are handed out "
                              "unchanged, so keep solutions out of them")
        if has_region and not meta.get("solution"):
            raise MarkerError(f"cell {i} has a solution region but is not marked as a solution cell "
                              "(metadata.nbgrader.solution); run `python -m pdlearn.assignments mark` on the notebook")
        if is_check_cell(cell) and not (meta.get("grade") and meta.get("locked") and "points" in meta):
            raise MarkerError(f"cell {i} is a check cell but not an nbgrader test cell (grade, locked, points); run "
                              "`python -m pdlearn.assignments mark` on the notebook")
        if meta:
            grade_id = meta.get("grade_id", "")
            if not re.fullmatch(r"[A-Za-z0-9_-]+", grade_id) or grade_id in seen:
                raise MarkerError(f"cell {i}: grade_id {grade_id!r} must be unique and made of letters, digits, "
                                  "'_' and '-'")
            seen.add(grade_id)


def student_copy(nb):
    """A new notebook: the student copy of solution notebook ``nb`` (nbformat v4), as nbgrader's
    ``generate_assignment`` makes it."""
    nb = nbformat.from_dict(nb)  # a deep copy
    _check_metadata(nb)
    for i, cell in enumerate(nb.cells):
        meta = nbgrader(cell)
        if cell.cell_type == "code":
            source = strip_solutions(cell.source, where=f"code cell {i}")
            if meta.get("solution") and source == cell.source:  # a solution cell without a region: all of it
                source = "\n".join(STUB)
            cell.source = source
            cell.outputs = []
            cell.execution_count = None
            for field in ("collapsed", "scrolled"):
                cell.metadata.pop(field, None)
        if meta:
            if meta.get("solution"):
                cell.metadata["deletable"] = False
            elif meta.get("grade") or meta.get("locked"):
                cell.metadata["deletable"] = False
                cell.metadata["editable"] = False
            meta["checksum"] = checksum(cell)
            meta["cell_type"] = cell.cell_type
    nb.metadata.pop("celltoolbar", None)
    nb.metadata.pop("widgets", None)
    return nb


def _functions(source):
    """Names of the functions a cell defines at its top level."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def mark(nb, default_points=1):
    """Write the nbgrader metadata the conventions ask for into solution notebook ``nb`` (in place):
    cells with a solution region become solution cells named after the function they define, check
    cells become test cells named ``check_<task>`` (keeping points already set), other code cells
    read-only. Returns ``nb``."""
    task, used, count = "setup", set(), 0

    def unique(name):
        k, candidate = 1, name
        while candidate in used:
            k += 1
            candidate = f"{name}_{k}"
        used.add(candidate)
        return candidate

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        old = nbgrader(cell)
        meta = {"grade": False, "locked": False, "schema_version": 3, "solution": False, "task": False}
        if BEGIN in cell.source and not is_check_cell(cell):
            names = _functions(cell.source)
            task = names[0] if names else f"task{count + 1}"
            count += 1
            meta.update(solution=True, grade_id=unique(task))
        elif is_check_cell(cell):
            meta.update(grade=True, locked=True, points=old.get("points", default_points),
                        grade_id=unique(f"check_{task}"))
        else:
            meta.update(locked=True, grade_id=unique("setup" if count == 0 else f"{task}_code"))
        cell.metadata["nbgrader"] = meta
    return nb


def write_student_copies(paths, out):
    """Write the student copy of each solution notebook in ``paths`` to folder ``out``; return the new paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in map(Path, paths):
        copy = student_copy(nbformat.read(path, as_version=4))
        target = out / path.name
        if target.resolve() == path.resolve():
            raise ValueError(f"{path} would overwrite itself; choose another --out folder")
        nbformat.write(copy, target)
        written.append(target)
    return written


def stale_copies(paths, out):
    """The student copies in ``out`` that are missing or differ from what ``paths`` generate."""
    stale = []
    for path in map(Path, paths):
        target = Path(out) / path.name
        want = nbformat.writes(student_copy(nbformat.read(path, as_version=4))) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != want:
            stale.append(target)
    return stale


def default_sources():
    """The solution notebooks of the book: book/assignments/solutions/*.ipynb under the current folder."""
    return sorted(SOLUTIONS.glob("*.ipynb"))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["grade"]:
        from .grader import main as grade

        return grade(argv[1:])
    if argv[:1] == ["mark"]:
        for path in argv[1:]:
            nbformat.write(mark(nbformat.read(path, as_version=4)), path)
            print(f"marked {path}")
        return 0
    parser = argparse.ArgumentParser(prog="python -m pdlearn.assignments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help=f"solution notebooks (default: {SOLUTIONS}/*.ipynb)")
    parser.add_argument("--out", default=str(STUDENT), help=f"folder for the student copies (default: {STUDENT}/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a student copy in --out is missing or out of date")
    args = parser.parse_args(argv)
    sources = args.notebooks or default_sources()
    if not sources:
        parser.error(f"no solution notebooks given and none found in {SOLUTIONS}/ (run from the repository "
                     "root, or name the notebooks)")
    try:
        if args.check:
            stale = stale_copies(sources, args.out)
            for path in stale:
                print(f"out of date: {path}")
            if stale:
                sys.exit("regenerate them with `python -m pdlearn.assignments`")
            print(f"{len(sources)} student copies up to date in {args.out}")
            return 0
        written = write_student_copies(sources, args.out)
    except MarkerError as err:
        sys.exit(f"error: {err}")
    for path in written:
        print(f"wrote {path}")
    return 0
