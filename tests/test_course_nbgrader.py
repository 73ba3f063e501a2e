"""nbgrader's ``generate_assignment`` on the solution notebooks gives the student copies that
``python -m pdlearn.assignments`` writes, byte for byte (skipped where nbgrader is not installed)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "book" / "assignments" / "solutions").glob("*.ipynb"))


@pytest.mark.slow
def test_nbgrader_generates_the_same_student_copies(tmp_path):
    pytest.importorskip("nbgrader")
    source = tmp_path / "source" / "course"
    source.mkdir(parents=True)
    for path in SOLUTIONS:
        shutil.copy(path, source)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "course", "--force",
                             f"--CourseDirectory.root={tmp_path}",
                             f"--CourseDirectory.db_url=sqlite:///{tmp_path / 'gradebook.db'}"],
                            capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for path in SOLUTIONS:
        ours = (ROOT / "book" / "assignments" / path.name).read_bytes()
        assert (tmp_path / "release" / "course" / path.name).read_bytes() == ours, path.name
