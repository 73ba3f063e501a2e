"""Re-execute the book's notebooks in place, so their stored outputs are fresh.

    python book/execute.py                      # every notebook under book/, cpu budget
    python book/execute.py book/02_ddim.ipynb   # only these
    python book/execute.py --budget smoke       # a quick dry run (do not commit its outputs)

Each notebook runs in its own folder (book/ for the chapters), as nbval runs it in
CI, so checkpoints land in book/checkpoints and later chapters reuse earlier
teachers. A notebook that raises is reported and left as it was on disk; the
script goes on with the others and exits non-zero at the end.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent


def notebooks(paths):
    """The notebooks to run: the given paths, or every notebook under book/ in name order."""
    if paths:
        return [Path(p).resolve() for p in paths]
    skip = {"checkpoints", ".ipynb_checkpoints", "_build"}
    student_copies = BOOK / "assignments"  # generated from assignments/solutions, not executed
    return sorted(p for p in BOOK.rglob("*.ipynb")
                  if not skip & set(p.relative_to(BOOK).parts) and p.parent != student_copies)


def execute(path, timeout):
    """Run one notebook top to bottom and write it back with its new outputs."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nbformat.write(nb, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks to run (default: all under book/)")
    parser.add_argument("--budget", default="cpu", choices=("smoke", "cpu", "gpu"),
                        help="PDLEARN_BUDGET for the run (default: cpu, the budget the book is committed at)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default: 3600)")
    args = parser.parse_args()
    os.environ["PDLEARN_BUDGET"] = args.budget  # the kernels inherit it

    todo = notebooks(args.paths)
    if not todo:
        sys.exit("no notebooks found under book/")
    failed = []
    for i, path in enumerate(todo, 1):
        name = os.path.relpath(path)
        print(f"[{i}/{len(todo)}] {name} (budget {args.budget}) ...", flush=True)
        start = time.perf_counter()
        try:
            execute(path, args.timeout)
        except Exception as err:  # a cell error, a timeout or a dead kernel: report it, go on
            failed.append(name)
            print(f"    FAILED after {time.perf_counter() - start:.0f} s ({type(err).__name__}); "
                  f"left unchanged on disk:\n{err}", flush=True)
            continue
        print(f"    done in {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        sys.exit(f"{len(failed)} of {len(todo)} notebooks failed: {', '.join(failed)}")
    print(f"all {len(todo)} notebooks executed at the {args.budget} budget")


if __name__ == "__main__":
    main()
