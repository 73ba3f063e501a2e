"""The course harness: the assignments' checks, the student-copy generator and the grader.

    checks        the checks a notebook's check cells call (``from pdlearn import checks``)
    hidden        the checks that only grading runs, on inputs the notebook does not show
    guard         around every call of a student's function: the library's answers are off
                  limits, and the library, torch and the checks must be unchanged afterwards
    assignments   student copies from the solution notebooks, with nbgrader's conventions
    extract       a student's functions out of a submitted cell, and the static scan for tampering
    grader        grading in a fresh kernel from the pristine checks; JSON and JUnit reports
    errors        CheckFailed and its two kinds, ImplementYourself and Tampered

    python -m pdlearn.assignments              # write the student copies
    python -m pdlearn.assignments grade a1 submissions/
"""
