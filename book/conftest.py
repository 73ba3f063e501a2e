"""nbval collects every notebook under book/. The student copies of the assignments
(book/assignments/*.ipynb) raise NotImplementedError by design, so they are not run as if they
were solutions; tests/test_course_assignments.py executes them and requires that exactly their check
cells fail. The solution notebooks (book/assignments/solutions/) are run like every chapter."""
from pathlib import Path

STUDENT_COPIES = Path(__file__).resolve().parent / "assignments"


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".ipynb" and collection_path.parent == STUDENT_COPIES:
        return True
    return None
