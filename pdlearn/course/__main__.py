"""python -m pdlearn.course: the same command line as python -m pdlearn.assignments."""
import sys

from .assignments import main

sys.exit(main())
