"""Packaging: one repository address, one version, and extras that name everything used.

- The repository's address is written once (``pdlearn.about.REPOSITORY``); every
  chapter's install line, ``_config.yml``, ``pyproject.toml`` and the README agree with
  it, and ``book/setup_cells.py`` writes the chapters' setup cells.
- The version is written once (``pdlearn.about.__version__``) and the CHANGELOG has it.
- The declared dependencies cover every import: the library's module-level imports
  after a bare ``pip install pdlearn``, and everything the tests and chapters import or
  run after ``pip install "pdlearn[test]"``. This is the check that would have caught
  the test extra without nbclient.

Each check is also run on a planted defect, to show that it can fail.
"""
import ast
import functools
import importlib
import importlib.metadata as metadata
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import pdlearn as pdl
from pdlearn import about

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("setup_cells", ROOT / "book" / "setup_cells.py")
setup_cells = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_cells)


def pyproject(root=ROOT):
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the repository's address

def install_lines(path):
    """The `%pip install` lines of the notebook's first code cell."""
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    return [line.strip() for line in first.source.splitlines() if line.strip().startswith("%pip")]


def address_disagreements(root=ROOT, repository=about.REPOSITORY):
    """Every place under ``root`` that names the repository otherwise than ``repository``."""
    install = re.compile(rf'%pip install -q "pdlearn(\[[\w,-]+\])? @ git\+{re.escape(repository)}"')
    found = []
    for path in setup_cells.chapters(root) + setup_cells.assignments(root):
        lines = install_lines(path)
        if len(lines) != 1 or not install.fullmatch(lines[0]):
            found.append(f"{path.relative_to(root)}: install line {lines}, not one that installs from {repository}")
    config = (root / "_config.yml").read_text(encoding="utf-8")
    urls = re.findall(r"^repository:\n(?:\s+.*\n)*?\s+url: (\S+)", config, flags=re.MULTILINE)
    if urls != [repository]:
        found.append(f"_config.yml: repository url {urls}, not [{repository!r}]")
    for name, url in pyproject(root)["project"]["urls"].items():
        if url != repository and not url.startswith(repository + "/"):
            found.append(f"pyproject.toml: [project.urls] {name} = {url!r} is not under {repository}")
    readme = re.findall(r'"pdlearn(?:\[[\w,-]+\])? @ git\+([^"]+)"', (root / "README.md").read_text(encoding="utf-8"))
    if not readme or set(readme) != {repository}:
        found.append(f"README.md: install lines name {readme}, not {repository!r}")
    return found


def test_every_place_names_the_one_repository_address():
    assert about.INSTALL == f"pdlearn @ git+{about.REPOSITORY}"
    assert about.REPOSITORY.startswith("https://github.com/")
    assert len(setup_cells.chapters()) >= 8 and len(setup_cells.assignments()) >= 4
    found = address_disagreements()
    assert not found, ("these disagree with REPOSITORY in pdlearn/about.py (python book/setup_cells.py "
                       "rewrites them):\n  " + "\n  ".join(found))


def test_setup_cells_are_the_scripts():
    changed = setup_cells.sync(check=True)
    assert not changed, f"run python book/setup_cells.py: {[str(p.relative_to(ROOT)) for p in changed]}"


def a_fork(tmp_path):
    """A copy of the files that name the repository, with chapter 1 and assignment 1 (small copies)."""
    for name in ("pyproject.toml", "_config.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "book" / "assignments").mkdir(parents=True)
    for rel in ("book/01_diffusion_2d.ipynb", "book/assignments/a1_forward_and_loss.ipynb"):
        nb = nbformat.read(ROOT / rel, as_version=4)
        nb.cells = nb.cells[:4]
        nbformat.write(nb, tmp_path / rel)
    return tmp_path


def test_a_wrong_address_anywhere_is_named(tmp_path):
    root = a_fork(tmp_path)
    assert address_disagreements(root) == []
    config = root / "_config.yml"
    config.write_text(config.read_text().replace(about.REPOSITORY, "https://github.com/someone/else"))
    chapter = root / "book" / "01_diffusion_2d.ipynb"
    nb = nbformat.read(chapter, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.source = cell.source.replace(about.REPOSITORY, "https://github.com/someone/else")
    nbformat.write(nb, chapter)
    found = address_disagreements(root)
    assert len(found) == 2 and found[0].startswith("book/01_diffusion_2d.ipynb") and "_config.yml" in found[1]
    # read against that other address, the places not changed are the ones named
    named = {f.split(":")[0] for f in address_disagreements(root, "https://github.com/someone/else")}
    assert named == {"book/assignments/a1_forward_and_loss.ipynb", "pyproject.toml", "README.md"}


def test_the_script_rewrites_only_the_setup_cell_and_the_addresses(tmp_path, monkeypatch):
    root = a_fork(tmp_path)
    chapter = root / "book" / "01_diffusion_2d.ipynb"
    before = nbformat.read(chapter, as_version=4)
    setup = next(c for c in before.cells if c.cell_type == "code")
    setup.source = setup.source.replace("print(pdl.describe_budget())", "print(BUDGET)")
    setup.source = setup.source.replace('"pdlearn @', '"pdlearn[deploy] @')  # a chapter that needs an extra
    nbformat.write(before, chapter)
    fork = "https://github.com/someone/pdlearn-fork"
    monkeypatch.setattr(setup_cells, "REPOSITORY", fork)
    assert len(setup_cells.sync(root, check=True)) == 5
    assert address_disagreements(root, fork) != []
    setup_cells.sync(root)
    assert setup_cells.sync(root, check=True) == []
    assert address_disagreements(root, fork) == []
    after = nbformat.read(chapter, as_version=4)
    source = next(c for c in after.cells if c.cell_type == "code").source
    assert "print(pdl.describe_budget())" in source and f'"pdlearn[deploy] @ git+{fork}"' in source
    for old, new in zip(before.cells, after.cells):  # outputs and every other cell untouched
        assert old.get("outputs") == new.get("outputs") and old.metadata == new.metadata
        if old is not setup:
            assert old.source == new.source


# ---------------------------------------------------------------- the version

def test_the_version_is_written_once():
    project = pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pdlearn.about.__version__"}
    assert pdl.__version__ == about.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", about.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## Unreleased" in changelog
    assert re.search(rf"^## {re.escape(about.__version__)}\b", changelog, flags=re.MULTILINE), \
        f"CHANGELOG.md has no section for {about.__version__}"


# ---------------------------------------------------------------- the dependencies cover the imports

def imports(source, module_level_only=False):
    """Top-level names of the absolute imports in ``source`` (and of pytest.importorskip)."""
    source = re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.MULTILINE)  # notebook magics
    tree = ast.parse(source)
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value.split(".")[0])
    return names


def third_party(names, local=()):
    return {n for n in names if n not in sys.stdlib_module_names and n != "pdlearn" and n not in local}


def library_imports():
    """What the library imports when it is imported (module-level imports of pdlearn/)."""
    found = set()
    for path in (ROOT / "pdlearn").rglob("*.py"):
        found |= imports(path.read_text(encoding="utf-8"), module_level_only=True)
    return third_party(found)


def suite_imports():
    """Everything tests/ and the book's notebooks and scripts import, anywhere in them."""
    local = {p.stem for p in (ROOT / "tests").glob("*.py")}
    found = set()
    for path in list((ROOT / "tests").glob("*.py")) + list((ROOT / "book").rglob("*.py")):
        found |= imports(path.read_text(encoding="utf-8"))
    for path in (ROOT / "book").rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                found |= imports(cell.source)
    return third_party(found, local)


# what the suite runs rather than imports: the test runner, nbval, the kernel the notebooks run in,
# and the packaging test's tools
SUITE_RUNS = {"pytest", "nbval", "ipykernel", "build", "setuptools", "twine"}
BOOK_RUNS = {"jupyter-book", "sphinxcontrib-bibtex", "ipykernel"}


def closure(requirements, extras=()):
    """The distributions ``requirements`` install, with what they require in turn (read from the
    installed packages' metadata; markers evaluated here). Missing ones are kept, not followed."""
    top = [Requirement(r) for r in requirements]
    seen, todo = set(), [(r, set(extras)) for r in top]
    declared = {canonicalize_name(r.name) for r in top}  # declared counts, whatever its marker says here
    while todo:
        req, wanted = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [(Requirement(r), set(req.extras)) for r in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            pass
    return seen | declared


@functools.lru_cache(maxsize=1)
def installed_modules():
    return metadata.packages_distributions()


def undeclared(modules, distributions):
    """The modules in ``modules`` that no distribution in ``distributions`` provides."""
    provided = installed_modules()
    return sorted(m for m in modules
                  if not {canonicalize_name(d) for d in provided.get(m, [m])} & distributions)


def requirements(extras=()):
    """The requirements of the library and of ``extras``, an extra that names others expanded."""
    project = pyproject()["project"]
    found = list(project["dependencies"])
    for extra in extras:
        for req in project["optional-dependencies"][extra]:
            own = Requirement(req)
            found += requirements(sorted(own.extras))[len(project["dependencies"]):] \
                if own.name == project["name"] else [req]
    return found


def test_a_bare_install_covers_what_the_library_imports():
    assert {"torch", "numpy", "matplotlib", "nbformat"} <= library_imports()
    missing = undeclared(library_imports(), closure(requirements()))
    assert not missing, f"pdlearn imports {missing} at import time; add them to [project] dependencies"


def test_the_test_extra_covers_what_the_suite_imports_and_runs():
    assert {"nbclient", "nbformat", "diffusers", "scipy"} <= suite_imports()
    have = closure(requirements(["test"]))
    missing = undeclared(suite_imports(), have) + sorted(SUITE_RUNS - have)
    assert not missing, f"the tests and chapters need {missing}; add them to the test extra"


def test_the_book_extra_builds_the_book():
    have = closure(requirements(["book"]))
    assert BOOK_RUNS <= have, f"the book extra lacks {sorted(BOOK_RUNS - have)}"
    jupyter_book = [Requirement(r) for r in requirements(["book"]) if r.startswith("jupyter-book")]
    assert len(jupyter_book) == 1 and not jupyter_book[0].specifier.contains("2.0"), \
        "Jupyter Book 2 is a different tool: the book extra stays on 1.x"


def test_the_deploy_extra_names_onnx_and_its_runtime():
    names = {canonicalize_name(Requirement(r).name) for r in requirements(["deploy"])}
    assert {"onnx", "onnxruntime", "onnxscript"} <= names


def test_the_check_names_a_missing_test_dependency():
    """The planted defect of the issue: the test extra without nbclient (and without nbgrader, which
    brings it along)."""
    reqs = [r for r in requirements(["test"]) if not r.startswith(("nbclient", "nbgrader"))]
    assert "nbclient" in undeclared(suite_imports(), closure(reqs))
    assert undeclared({"sklearn", "numpy"}, closure(["scikit-learn"])) == []  # import names map to packages
    assert undeclared({"not_a_package_here"}, closure(["numpy"])) == ["not_a_package_here"]


def test_bounds_are_lower_bounds():
    """Exact pins and upper bounds belong in requirements.txt; the library asks for lower bounds
    (with one upper bound: Jupyter Book 1.x)."""
    project = pyproject()["project"]
    for req in map(Requirement, requirements(list(project["optional-dependencies"]))):
        kinds = {s.operator for s in req.specifier}
        assert ">=" in kinds, f"{req} has no lower bound"
        assert kinds <= {">=", "<"} and (kinds == {">="} or req.name == "jupyter-book"), f"{req} pins or caps"


# ---------------------------------------------------------------- the declared dependencies import

def import_names(distribution, provided=None):
    """The module a distribution is imported by: its own name, or its one public top-level module."""
    provided = provided or metadata.packages_distributions()
    mine = sorted(m for m, dists in provided.items()
                  if canonicalize_name(distribution) in {canonicalize_name(d) for d in dists})
    own = distribution.replace("-", "_").lower()
    public = [m for m in mine if not m.startswith("_")]
    return [own] if own in mine else public if len(public) == 1 else public or [own]


def import_failures(requirements):
    """'name: error' for every requirement (marker true here) whose module does not import. A
    package that installs but does not import (diffusers 0.25 with huggingface_hub >= 0.26, which
    dropped cached_download) would otherwise turn its tests into skips."""
    failures, provided = [], metadata.packages_distributions()
    for req in map(Requirement, requirements):
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        for module in import_names(req.name, provided):
            try:
                importlib.import_module(module)
            except Exception as err:  # noqa: BLE001 - any failure to import is the finding
                failures.append(f"{req.name} ({module}): {type(err).__name__}: {err}")
    return failures


def test_every_declared_dependency_imports():
    assert import_names("scikit-learn") == ["sklearn"] and import_names("ipykernel") == ["ipykernel"]
    failures = import_failures(requirements(["test"]))
    assert not failures, "installed but broken:\n  " + "\n  ".join(failures)


def test_a_dependency_that_fails_to_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'cached_download' from 'huggingface_hub'\")\n")
    info = tmp_path / "brokenpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n")
    (info / "RECORD").write_text("brokenpkg/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    failures = import_failures(["brokenpkg>=1.0", "numpy>=1.23"])
    assert len(failures) == 1 and failures[0].startswith("brokenpkg (brokenpkg): ImportError")
