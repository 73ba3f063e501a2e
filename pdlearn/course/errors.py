"""The errors a check raises: all are ``CheckFailed`` (an AssertionError) with a message that
says what is wrong."""


class CheckFailed(AssertionError):
    """An assignment check found a wrong answer; the message says what is wrong."""


class ImplementYourself(CheckFailed):
    """A student's function called the library function that answers its task."""


class Tampered(CheckFailed):
    """A student's function (or a notebook cell) changed the library, torch or the checks."""
