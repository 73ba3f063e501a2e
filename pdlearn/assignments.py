"""``python -m pdlearn.assignments``: the course command line (``pdlearn.course.assignments``).

    python -m pdlearn.assignments                  # write the student copies
    python -m pdlearn.assignments grade a1 submissions/
"""
import sys

from .course import assignments as _assignments

if __name__ == "__main__":
    sys.exit(_assignments.main())
sys.modules[__name__] = _assignments
