"""Re-execute the book's notebooks in place, so their stored outputs are fresh.

    python book/execute.py                      # every notebook under book/, cpu budget
    python book/execute.py book/02_ddim.ipynb   # only these
    python book/execute.py --budget smoke       # a quick dry run (do not commit its outputs)

Each notebook runs in its own folder (book/ for the chapters), as nbval runs it in
CI, so checkpoints land in book/checkpoints and later chapters reuse earlier
teachers. A notebook that raises is reported and left as it was on disk; the
script goes on with the others and exits non-zero at the end.

The stored outputs are made for the rendered page, which runs no kernel:

- the kernels run with PDLEARN_PROGRESS=summary, so every loop of the library prints
  one line (what ran, how long it took) instead of a progress bar;
- ``for_the_page`` then drops what a page cannot show: the widgets' stored state (it
  makes the page load a widget runtime), any progress bar stored as a widget (a loop
  that does not go through ``pdl.progress``), and, in place of an interactive
  explorer, one line saying that it runs in a live notebook.
"""
import argparse
import os
import re
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent
WIDGET = "application/vnd.jupyter.widget-view+json"
BAR = re.compile(r"\d+%\||\|\s*\d+/\d*\s*\[|\d+(\.\d+)?(it/s|s/it)")  # how a tqdm bar prints itself
EXPLORER = ("An interactive explorer: it runs in a live notebook (the rocket button at the top\n"
            "of the page opens this chapter on Colab); the figure beside it shows the same thing.")


def is_progress_bar(output):
    """Whether a stored output is a progress bar widget (tqdm's text stands in for it)."""
    data = output.get("data", {})
    return WIDGET in data and bool(BAR.search(str(data.get("text/plain", ""))))


def for_the_page(nb):
    """Make the stored outputs of ``nb`` (nbformat v4) fit a page without a kernel, in place
    (module docstring); returns how many progress bars and explorers it replaced."""
    nb.metadata.pop("widgets", None)
    bars = explorers = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if is_progress_bar(out):
                bars += 1
                continue
            if WIDGET in out.get("data", {}):
                explorers += 1
                out = nbformat.v4.new_output("display_data", data={"text/plain": EXPLORER})
            outputs.append(out)
        cell.outputs = outputs
    return bars, explorers


def notebooks(paths):
    """The notebooks to run: the given paths, or every notebook under book/ in name order."""
    if paths:
        return [Path(p).resolve() for p in paths]
    skip = {"checkpoints", ".ipynb_checkpoints", "_build"}
    student_copies = BOOK / "assignments"  # generated from assignments/solutions, not executed
    return sorted(p for p in BOOK.rglob("*.ipynb")
                  if not skip & set(p.relative_to(BOOK).parts) and p.parent != student_copies)


def kernel_cpu():
    """CPU seconds (user + system) of this script's finished child processes: the kernels. A
    chapter's CPU time does not move with other load on the machine, as its wall time does."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute(path, timeout):
    """Run one notebook top to bottom and write it back with its new outputs."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for_the_page(nb)
    nbformat.write(nb, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks to run (default: all under book/)")
    parser.add_argument("--budget", default="cpu", choices=("smoke", "cpu", "gpu"),
                        help="PDLEARN_BUDGET for the run (default: cpu, the budget the book is committed at)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default: 3600)")
    args = parser.parse_args()
    os.environ["PDLEARN_BUDGET"] = args.budget  # the kernels inherit both
    os.environ["PDLEARN_PROGRESS"] = "summary"  # one line per loop on the page, not a bar

    todo = notebooks(args.paths)
    if not todo:
        sys.exit("no notebooks found under book/")
    failed = []
    for i, path in enumerate(todo, 1):
        name = os.path.relpath(path)
        print(f"[{i}/{len(todo)}] {name} (budget {args.budget}) ...", flush=True)
        start, cpu = time.perf_counter(), kernel_cpu()
        try:
            execute(path, args.timeout)
        except Exception as err:  # a cell error, a timeout or a dead kernel: report it, go on
            failed.append(name)
            print(f"    FAILED after {time.perf_counter() - start:.0f} s ({type(err).__name__}); "
                  f"left unchanged on disk:\n{err}", flush=True)
            continue
        print(f"    done in {time.perf_counter() - start:.0f} s wall, {kernel_cpu() - cpu:.0f} s of the kernel's CPU "
              "(user + system, all its threads)", flush=True)
    if failed:
        sys.exit(f"{len(failed)} of {len(todo)} notebooks failed: {', '.join(failed)}")
    print(f"all {len(todo)} notebooks executed at the {args.budget} budget")


if __name__ == "__main__":
    main()
