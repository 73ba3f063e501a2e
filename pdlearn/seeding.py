"""Every seeded random stream of the library, derived in one place.

A run has one ``seed``; each random stream inside it (the noise of a block of samples,
the minibatches of a rank, a distillation round, a data floor's draws) gets its own
seed from it through ``derive_seed(seed, stream, *index)``. The rules are kept as they
were first written, so that every stored result reproduces:

    stream        index              derived seed                  used by
    'noise'       block b            seed * 1,000,003 + b          sampling.NoiseSource
    'rank'        rank r             seed + 1,000,003 * r          train_loop under torchrun
    'round'       round k            seed * 1,000 + k              distill.distill_rounds
    'pairs'       (none)             seed + 1,000                  distill.one_step_distill
    'floor'       repeat r, side j   10,000 + seed * 1,000 + 2r + j   metrics.floor (j = 0, 1)

Why they do not collide where it matters. Streams of different kinds feed different
generators (sample noise, minibatch draws, data draws), so equal numbers in two kinds
do not correlate anything a chapter compares. Within one kind: noise blocks of seeds s
and s' coincide only if s * 1,000,003 + b = s' * 1,000,003 + b', impossible for blocks
b, b' < 1,000,003 (over 64 million samples); ranks keep seed + 1,000,003 r, so rank 0
is the seed itself (a run without a process group is unchanged) and no seed below
1,000,003 meets another rank's; rounds k < 1,000 of seeds s < 1,000,003 never meet;
pairs sit 1,000 above the sampling seeds 0..999 a chapter uses, so the one-step
student never trains on the noise it is evaluated with; floors start at 10,000, above
every data seed a chapter draws its training set with.

torch's CPU generator keeps only the low 32 bits of a seed (``manual_seed``), which is
why the strides stay far below 2^32 instead of being powers of two above it.
"""
from .validate import _integer

STREAMS = {
    "noise": (1, lambda seed, block: seed * 1_000_003 + block),
    "rank": (1, lambda seed, rank: seed + 1_000_003 * rank),
    "round": (1, lambda seed, k: seed * 1_000 + k),
    "pairs": (0, lambda seed: seed + 1_000),
    "floor": (2, lambda seed, r, side: 10_000 + seed * 1_000 + 2 * r + side),
}


def derive_seed(seed, stream, *index):
    """The seed of random stream ``stream`` (a name of ``STREAMS``) at ``index`` of run ``seed``
    (module docstring): for example ``derive_seed(0, 'noise', 3)`` seeds the fourth block of
    64 samples of seed 0."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    arity, rule = STREAMS[stream]
    if len(index) != arity:
        raise TypeError(f"the {stream!r} stream takes {arity} index value(s), got {len(index)}")
    seed = _integer(seed, "seed", "an integer")
    return rule(seed, *(_integer(i, f"{stream} index", "an integer") for i in index))
