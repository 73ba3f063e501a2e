"""Write the student copies of the course assignments.

    python -m pdlearn.assignments                          # book/assignments/*.ipynb -> student/
    python -m pdlearn.assignments --out handout/ a1.ipynb  # chosen notebooks, another folder

A solution notebook marks its solutions with a pair of comment lines

    ### BEGIN SOLUTION
    ...the solution...
    ### END SOLUTION

The student copy replaces each such region by one line, at the indentation of
its BEGIN marker, ``raise NotImplementedError("...")``. Put the markers inside
a function body: the cell that defines the function still runs, and the check
cell that calls it fails with a message from ``pdlearn.checks``. Check cells
start with the line ``# CHECK`` and are copied unchanged. Outputs and execution
counts are cleared. The same solution always gives the same bytes, and a
student copy passed through again comes out unchanged.
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK = "# CHECK"
STUB = 'raise NotImplementedError("write your solution here")'


class MarkerError(ValueError):
    """A solution region is not closed, or closed without being opened."""


def is_check_cell(cell):
    """A check cell is a code cell whose first line is ``# CHECK``."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK)


def strip_solutions(source, where="cell"):
    """The source with every BEGIN/END SOLUTION region replaced by a NotImplementedError stub."""
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise MarkerError(f"{where}, line {number}: '{BEGIN}' inside another solution region; "
                                  f"close the first with '{END}'")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.append(f"{indent}{STUB}")
        elif marker == END:
            if not inside:
                raise MarkerError(f"{where}, line {number}: '{END}' without a '{BEGIN}' above it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed; add a line '{END}' after the solution")
    return "\n".join(out)


def student_copy(nb):
    """A new notebook: the student copy of solution notebook ``nb`` (nbformat v4)."""
    nb = nbformat.from_dict(nb)  # a deep copy
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_check_cell(cell) and BEGIN in cell.source:
            raise MarkerError(f"code cell {i} is a check cell with a solution region; checks are handed out "
                              "unchanged, so keep solutions out of them")
        cell.source = strip_solutions(cell.source, where=f"code cell {i}")
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
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


def default_sources():
    """The solution notebooks of the book: book/assignments/*.ipynb under the current folder."""
    return sorted(Path("book", "assignments").glob("*.ipynb"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pdlearn.assignments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="solution notebooks (default: book/assignments/*.ipynb)")
    parser.add_argument("--out", default="student", help="folder for the student copies (default: student/)")
    args = parser.parse_args(argv)
    sources = args.notebooks or default_sources()
    if not sources:
        parser.error("no solution notebooks given and none found in book/assignments/ (run from the repository "
                     "root, or name the notebooks)")
    try:
        written = write_student_copies(sources, args.out)
    except MarkerError as err:
        sys.exit(f"error: {err}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    main()
