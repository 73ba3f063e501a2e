"""The install jobs: pdlearn[test] at the newest versions, or at the lowest that pyproject.toml allows.

    python3 .ci/versions.py newest     every dependency at its newest release
    python3 .ci/versions.py lowest     every direct dependency at its lower bound
    python3 .ci/versions.py lowest --python 3.10 --torch-at-bound
                                       the same on another Python, with torch at its own bound

Each job builds a fresh virtual environment under build/ from ``pip install ".[test]"``
alone (no requirements.txt), prints what it got (``pip freeze``, so that a break names
the package), and runs the fast tests (``-m "not slow"``) and one 2D and one image chapter
at the smoke budget under nbval-lax, with an empty checkpoint folder. It exits non-zero if
the install or a test fails, and prints one line with the versions and times at the end.

torch goes in first, so that nothing else pulls in another build. ``pip install
torch==2.13.0`` takes the CPU build this machine keeps on disk, which exists for Python
3.11 only; PyPI's Linux wheels of torch are CUDA builds that pull several GB of NVIDIA
libraries (for Python 3.12 too, so the jobs run on 3.11). ``--torch-at-bound`` asks PyPI
for torch at its lower bound instead: a download of several GB, for a run by hand.

The lowest job holds every direct dependency (``[project] dependencies`` and the test extra)
to the release series of its lower bound, with a constraints file
(build/lowest-constraints-pyX.Y.txt): ``numpy>=1.23`` becomes ``numpy>=1.23,==1.23.*``, which
takes the series' last patch release (1.23.5), and wheels only, so that a series with no
wheel for this Python fails at once instead of compiling. What those require in turn
resolves to its newest release that fits, as it would for a reader.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_TORCH = "torch==2.13.0"  # the CPU build on this machine's disk (Python 3.11)
CHAPTERS = ["book/01_diffusion_2d.ipynb", "book/05_diffusion_images.ipynb"]
# The golden outputs hold seeded numbers to 1e-5 in the executed environment (requirements.txt,
# which the README's test command runs): another torch rounds its training steps otherwise
# (torch 2.1 moves them), which says nothing about whether pdlearn installs and works.
DESELECT = ["tests/test_golden.py::test_golden_outputs_are_unchanged"]
# guards against a hang, not budgets: on a quiet 2-core machine a job takes about ten minutes
TEST_TIMEOUT_S = 1200
INSTALL_TIMEOUT_S = 1200


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def lower_bounds(extras=("test",)):
    """{name: version} of every direct dependency's lower bound (``>=``), markers kept aside."""
    reqs = project()["dependencies"] + [r for e in extras for r in project()["optional-dependencies"][e]]
    bounds, i = {}, 0
    while i < len(reqs):
        req, i = reqs[i], i + 1
        spec, _, marker = req.partition(";")
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(\[[^]]*\])?\s*(.*)", spec)
        name, extras, specifiers = match.groups()
        if name == project()["name"]:  # an extra that includes others ("pdlearn[deploy]"): their bounds
            reqs += [r for e in extras.strip("[]").split(",") for r in project()["optional-dependencies"][e.strip()]]
            continue
        lower = re.search(r">=\s*([0-9][^,\s]*)", specifiers)
        if lower is None:
            raise SystemExit(f"pyproject.toml: {req!r} has no lower bound (>=)")
        bounds[name] = (lower.group(1), marker.strip())
    return bounds


def series(version):
    """The release series a bound names: '1.23' for 1.23, '7.0' for 7, '1.9' for 1.9.3."""
    parts = (version.split(".") + ["0"])[:2]
    return ".".join(parts)


def oldest_python():
    """The lowest minor version of requires-python ('>=3.10' gives '3.10')."""
    return re.search(r">=\s*(3\.\d+)", project()["requires-python"]).group(1)


def interpreter(version):
    """A Python of that minor version: pyenv's newest patch release, or pythonX.Y on PATH."""
    pyenv = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1].split("/")[0])])
    found = pyenv[-1] if pyenv else shutil.which(f"python{version}")
    if not found:
        raise SystemExit(f"no Python {version} here (looked in pyenv and for python{version} on PATH)")
    return found


def step(what, args, timeout, env=None):
    print(f"versions: {what}: {' '.join(map(str, args))}", flush=True)
    began = time.perf_counter()
    # its own process group, so that a step past its time goes with its kernels and workers
    proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"versions: {what} ran past its {timeout} s", flush=True)
        code = 124
    return code, time.perf_counter() - began


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", choices=("newest", "lowest"))
    parser.add_argument("--python", help="minor version, e.g. 3.10 (default: 3.11, where the CPU torch is)")
    parser.add_argument("--torch-at-bound", action="store_true",
                        help="lowest: torch at its lower bound from PyPI (a CUDA build, several GB)")
    parser.add_argument("--install-timeout", type=int, default=INSTALL_TIMEOUT_S, help="seconds per install step")
    args = parser.parse_args(argv)
    version = args.python or "3.11"
    venv = ROOT / "build" / f"venv-{args.job}-py{version}"
    shutil.rmtree(venv, ignore_errors=True)
    checkpoints = ROOT / "build" / f"checkpoints-{args.job}-py{version}"
    shutil.rmtree(checkpoints, ignore_errors=True)
    python, pip = venv / "bin" / "python", [venv / "bin" / "python", "-m", "pip"]
    times = {}

    code, times["venv"] = step("venv", [interpreter(version), "-m", "venv", venv], 120)
    if code:
        return code
    torch = CPU_TORCH
    if args.job == "lowest":
        bounds = lower_bounds()
        if args.torch_at_bound:
            torch = f"torch=={bounds['torch'][0]}"
        lines = [f"{name}>={low},=={series(low)}.*" + (f"; {marker}" if marker else "")
                 for name, (low, marker) in bounds.items() if name != "torch"]
        constraints = ROOT / "build" / f"lowest-constraints-py{version}.txt"
        constraints.write_text("\n".join(lines) + "\n")
        print(f"versions: lower bounds (Python {oldest_python()} is the oldest pyproject.toml allows; "
              f"this run: {version}):\n  " + "\n  ".join([torch] + lines), flush=True)
    code, times["torch"] = step("torch first", pip + ["install", "--quiet", torch], args.install_timeout)
    if code:
        return code
    install = pip + ["install", "--quiet", ".[test]"]
    if args.job == "lowest":
        install[4:4] = ["-c", constraints, "--only-binary", ":all:"]
    code, times["install"] = step("pdlearn[test]", install, args.install_timeout)
    if code:
        return code
    freeze = subprocess.run(pip + ["freeze", "--exclude", "pdlearn"], capture_output=True, text=True).stdout
    print(f"versions: the {args.job} job got, on {subprocess.check_output([python, '-V'], text=True).strip()}:")
    print("  " + "\n  ".join(freeze.split()), flush=True)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PDLEARN_BUDGET="smoke", PDLEARN_CHECKPOINTS=str(checkpoints), MPLBACKEND="agg",
               PATH=os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]))
    code, times["tests"] = step("tests", [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "not slow",
                                          "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300",
                                          *(f"--deselect={d}" for d in DESELECT),
                                          "tests", *CHAPTERS], TEST_TIMEOUT_S, env=env)
    direct = {name: v for name, v in (line.split("==", 1) for line in freeze.split() if "==" in line)}
    names = ["torch", *(n for n in lower_bounds() if n != "torch")]
    got = ", ".join(f"{n} {direct.get(n, direct.get(n.replace('-', '_'), '?'))}" for n in names
                    if n in direct or n.replace("-", "_") in direct)
    verdict = "passed" if code == 0 else f"FAILED (pytest exit code {code})"
    print(f"versions: the {args.job} job {verdict} on Python {version} in {sum(times.values()):.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in times.items())}); direct dependencies: {got}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
