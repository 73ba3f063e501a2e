"""Write the setup cell of every chapter, and the repository's address wherever it is named.

    python book/setup_cells.py           rewrite what differs, print what changed
    python book/setup_cells.py --check   change nothing; exit 1 if anything differs

The first code cell of every chapter (book/NN_*.ipynb) becomes ``SETUP``, whose install
line is ``pdlearn.about.INSTALL`` with the extras the chapter's old line asked for
(``pdlearn[deploy]``); only that cell's source changes, never its outputs or any other cell. The repository's address, ``pdlearn.about.REPOSITORY``, is
also written into the install line of the assignments' setup cells, the
``[project.urls]`` of pyproject.toml, the ``repository: url:`` of _config.yml and the
README's Colab section. So a fork changes ``REPOSITORY`` and runs this script.
"""
import argparse
import re
import runpy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ABOUT = runpy.run_path(str(ROOT / "pdlearn" / "about.py"))  # this checkout's, whichever pdlearn is installed
REPOSITORY = ABOUT["REPOSITORY"]

SETUP = """\
# Setup: installs pdlearn on Colab; locally `pip install -e .` already did.
try:
    import pdlearn as pdl
except ImportError:  # on Colab
    %pip install -q "{install}"
    import pdlearn as pdl
import torch
BUDGET = pdl.budget(); DEVICE = pdl.device()
print(pdl.describe_budget())  # the budget, why it was picked, and the device"""

GITHUB = r"https://github\.com/[\w.-]+/[\w.-]+"
# the install line, with the extras a chapter asks for (chapter 10: pdlearn[deploy]) in group 1
INSTALL_LINE = re.compile(rf'"pdlearn(\[[\w,-]+\])? @ git\+{GITHUB}"')
# (file, pattern whose group 1 is kept and whose address is replaced by REPOSITORY)
ADDRESSES = [
    ("pyproject.toml", re.compile(rf'^(\w+ = "){GITHUB}', re.MULTILINE)),
    ("_config.yml", re.compile(rf"^(\s+url: ){GITHUB}", re.MULTILINE)),
    ("README.md", re.compile(rf'("pdlearn(?:\[[\w,-]+\])? @ git\+){GITHUB}')),
]


def chapters(root=ROOT):
    return sorted((root / "book").glob("[0-9][0-9]_*.ipynb"))


def assignments(root=ROOT):
    """The assignments' notebooks: student copies and solutions."""
    return sorted(p for p in (root / "book" / "assignments").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def install_line(extras=""):
    return f'"pdlearn{extras} @ git+{REPOSITORY}"'


def setup_cell(old_source):
    """SETUP, installing the extras the old cell's install line named."""
    found = INSTALL_LINE.search(old_source)
    return SETUP.format(install=install_line(found.group(1) or "" if found else "")[1:-1])


def first_code_cell(nb, path):
    cell = next((c for c in nb.cells if c.cell_type == "code"), None)
    if cell is None or "import pdlearn as pdl" not in cell.source:
        raise SystemExit(f"{path}: its first code cell is not the setup cell (import pdlearn as pdl)")
    return cell


def write_notebook(path, nb):
    text = nbformat.writes(nb) + "\n"
    path.write_text(text, encoding="utf-8")


def sync(root=ROOT, check=False):
    """The files that differ from what this script writes (rewritten unless ``check``)."""
    changed = []
    for path in chapters(root) + assignments(root):
        nb = nbformat.read(path, as_version=4)
        cell = first_code_cell(nb, path)
        if "assignments" in path.relative_to(root).parts:  # only the address: these cells are the course's own
            source = INSTALL_LINE.sub(lambda m: install_line(m.group(1) or ""), cell.source)
        else:
            source = setup_cell(cell.source)
        if source != cell.source:
            changed.append(path)
            if not check:
                cell.source = source
                write_notebook(path, nb)
    for name, pattern in ADDRESSES:
        path = root / name
        text = path.read_text(encoding="utf-8")
        new = pattern.sub(lambda m: m.group(1) + REPOSITORY, text)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    changed = sync(check=args.check)
    for path in changed:
        print(f"{'differs' if args.check else 'rewrote'}: {path.relative_to(ROOT)}")
    if args.check and changed:
        print("run python book/setup_cells.py to write them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
