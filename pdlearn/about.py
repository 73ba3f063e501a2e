"""What pdlearn is and where it lives: the version and the repository, written once.

``pyproject.toml`` reads ``__version__`` from here (setuptools' dynamic version).
``REPOSITORY`` is the one place the repository's address is written: the install
line of every chapter's setup cell, ``_config.yml`` (Colab, repository and issue
buttons), ``pyproject.toml`` and the README must agree with it, and
``tests/test_packaging.py`` checks that they do. A fork changes ``REPOSITORY`` and
runs ``python book/setup_cells.py``, which rewrites the others.
"""
__version__ = "0.1.0"

REPOSITORY = "https://github.com/pdlearn/pdlearn"

# what a chapter's setup cell installs on Colab: the library from the repository, nothing pinned
INSTALL = f"pdlearn @ git+{REPOSITORY}"
