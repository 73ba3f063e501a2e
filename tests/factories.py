"""The tiny networks and data most tests run on (seeded). A module of its own, not
conftest.py, because book/conftest.py shares that module name."""
import torch

import pdlearn as pdl


def make_mlp(seed=0, width=16, depth=1, dim=2, emb_dim=64, prediction="v", **kwargs):
    """A small randomly initialised MLPDenoiser (seeded)."""
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=dim, width=width, depth=depth, emb_dim=emb_dim, prediction=prediction,
                                  **kwargs)


def make_unet(seed=0, channels=8, ch_mult=(1, 2), **kwargs):
    """A small randomly initialised UNet for 8 x 8 digits (seeded)."""
    torch.manual_seed(seed)
    return pdl.models.UNet(channels=channels, ch_mult=ch_mult, **kwargs)


def moons(n=512, seed=0):
    """Two moons, n points."""
    return pdl.data.toy("moons", n=n, seed=seed)


class Killed(RuntimeError):
    """What a flaky network raises: a process killed mid-run."""


class Flaky:
    """Mixin for a network whose forward raises ``Killed`` on call number ``kill_at`` (None: never),
    to test resume after a kill: ``class FlakyUNet(Flaky, pdl.models.UNet)``."""

    kill_at = None

    def forward(self, z, t, **kwargs):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.kill_at:
            raise Killed("killed")
        return super().forward(z, t, **kwargs)
