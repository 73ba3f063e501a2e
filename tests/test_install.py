"""The wheel stands alone.

``python -m build`` makes an sdist and a wheel (the wheel built from the sdist, as
build does), ``twine check`` accepts both, and the wheel, installed into a clean
virtual environment outside the source tree, carries the digits classifier's weights
and runs chapter 1 at the smoke budget from a copy of ``book/``. The clean environment
borrows the installed dependencies (a ``.pth`` file that names this environment's
site-packages, written after the wheel is installed) so that nothing is downloaded,
and sees neither the source tree nor an editable install of it.
"""
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest

from pdlearn import about

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(args, **kwargs):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def clean_env(venv, **extra):
    """This process's environment without a way back to the source tree, the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=ROOT)
    return out


def test_build_makes_an_sdist_and_a_wheel_that_twine_accepts(dist):
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"pdlearn-{about.__version__}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"pdlearn-{about.__version__}.tar.gz"]
    assert "PASSED" in run([sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists])
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "pdlearn/weights/digits_classifier.pt" in names and "pdlearn/about.py" in names
    assert not [n for n in names if n.startswith(("tests/", "book/", "bench/"))], "the wheel is the library alone"
    metadata = zipfile.ZipFile(wheels[0]).read(f"pdlearn-{about.__version__}.dist-info/METADATA").decode()
    assert f"Version: {about.__version__}" in metadata and f"Project-URL: Repository, {about.REPOSITORY}" in metadata
    assert "Provides-Extra: test" in metadata and "Requires-Dist: nbformat" in metadata
    with tarfile.open(sdists[0]) as sdist:
        members = sdist.getnames()
    assert f"pdlearn-{about.__version__}/pdlearn/weights/digits_classifier.pt" in members


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A clean venv with the wheel installed, borrowing this environment's other packages."""
    venv = tmp_path_factory.mktemp("clean") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    env = clean_env(venv)  # with PYTHONPATH at the source tree, pip would take its egg-info for an install
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
        env=env, cwd=venv)
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).strip()
    assert (Path(purelib) / "pdlearn" / "__init__.py").is_file(), "the wheel did not install into the clean venv"
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "borrowed_site_packages.pth").write_text("\n".join(borrowed) + "\n")
    return venv


def test_the_installed_wheel_carries_its_weights(venv, tmp_path):
    code = ("import pdlearn, os; from pdlearn.metrics import classifier as c; net = c.load_classifier(); "
            "print(pdlearn.__file__); print(c.WEIGHTS); print(pdlearn.__version__); print(net.test_accuracy)")
    module, weights, version, accuracy = run([venv / "bin" / "python", "-c", code], cwd=tmp_path,
                                             env=clean_env(venv)).split()
    assert Path(module).is_relative_to(venv) and Path(weights).is_relative_to(venv), (module, weights)
    assert not Path(module).is_relative_to(ROOT)
    assert version == about.__version__ and float(accuracy) > 0.95


def test_the_installed_wheel_runs_chapter_1_at_smoke(venv, tmp_path):
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("checkpoints", "data_cache", "*.pt"))
    chapter = book / "01_diffusion_2d.ipynb"
    nb = nbformat.read(chapter, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel:', sys.executable, pdl.__file__)"))
    nbformat.write(nb, chapter)
    execute = ("import sys, nbformat; from nbclient import NotebookClient; "
               "nb = nbformat.read(sys.argv[1], as_version=4); "
               "NotebookClient(nb, timeout=600, kernel_name='python3', "
               "resources={'metadata': {'path': sys.argv[2]}}).execute(); nbformat.write(nb, sys.argv[1])")
    env = clean_env(venv, PDLEARN_BUDGET="smoke", PDLEARN_CHECKPOINTS=str(tmp_path / "checkpoints"),
                    MPLBACKEND="agg", PDLEARN_PROGRESS="summary")
    run([venv / "bin" / "python", "-c", execute, chapter, book], cwd=tmp_path, env=env)
    done = nbformat.read(chapter, as_version=4)
    text = "".join(o.get("text", "") for c in done.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "budget: smoke (set by PDLEARN_BUDGET)" in text
    kernel = next(line for line in text.splitlines() if line.startswith("kernel:")).split()
    assert Path(kernel[1]).parent == venv / "bin", f"the chapter ran in {kernel[1]}, not in the clean venv"
    assert Path(kernel[2]).is_relative_to(venv), f"the chapter imported pdlearn from {kernel[2]}"
    assert any(tmp_path.joinpath("checkpoints").glob("*.pt")), "chapter 1 trains and keeps its teachers"
