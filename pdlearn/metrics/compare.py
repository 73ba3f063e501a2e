"""The one comparison rule of the book, and the score-beside-its-floor idiom.

Every comparison word in the book ("beats", "a tie", "within the floor") repeats a
verdict printed by ``verdict``; the rule is stated in its docstring and on the notation
page.
"""


VERDICTS = ("better", "tie", "worse")


def verdict(score, reference, spread, k=2.0, lower_is_better=True):
    """The book's one comparison rule: is ``score`` better than ``reference``, a tie, or worse?

        d = score - reference
        'tie'     when |d| <= k * spread              (k = 2 by default)
        'better'  when d < -k * spread  (lower is better: MMD, FID, milliseconds)
        'worse'   when d > +k * spread

    ``spread`` is the standard deviation of the null: the spread of the data-vs-data floor
    drawn like the samples (``floor``, ``image_fid_floor``), or the spread of repeated
    paired timings. A difference inside two spreads is a tie, whatever the digits say.
    With ``lower_is_better=False`` (accuracy, confidence) 'better' and 'worse' swap.
    """
    score, reference, spread = float(score), float(reference), float(spread)
    if not spread >= 0:
        raise ValueError(f"spread must be a standard deviation >= 0, got {spread}")
    if not k > 0:
        raise ValueError(f"k must be > 0 (how many spreads make a difference), got {k}")
    d = score - reference if lower_is_better else reference - score
    if abs(d) <= k * spread:
        return "tie"
    return "better" if d < 0 else "worse"


def with_floor(score, floor, fmt=".5f"):
    """A score beside its floor, as the book prints them: ``'0.00123 (floor 0.00040 +- 0.00041)'``.
    ``floor`` is the (mean, std) of ``floor`` or ``image_fid_floor``."""
    mean, std = floor
    return f"{score:{fmt}} (floor {mean:{fmt}} +- {std:{fmt}})"
