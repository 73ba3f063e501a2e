"""pdlearn.progress: a bar in a live notebook, one line on a rendered page."""
import pytest
import torch

import pdlearn as pdl
from pdlearn import progress


def test_summary_mode_prints_one_line_per_training(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PDLEARN_PROGRESS", "summary")
    x = pdl.data.toy("moons", n=200)
    path = str(tmp_path / "t.pt")
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(width=16, depth=1)
    pdl.train_diffusion(net, x, pdl.CosineSchedule(), steps=60, desc="moons teacher", checkpoint=path)
    pdl.train_diffusion(net, x, pdl.CosineSchedule(), steps=60, desc="moons teacher", checkpoint=path, resume=True)
    pdl.ddim_sample(net, pdl.CosineSchedule(), n=8, steps=4, progress=True)  # a sampler's steps leave no line
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 2
    assert lines[0].startswith("moons teacher: 60 steps in ") and "loss=" in lines[0]
    assert lines[1] == "moons teacher: loaded from its checkpoint (60 steps)"


def test_off_mode_prints_nothing_and_a_bad_mode_is_named(monkeypatch, capsys):
    monkeypatch.setenv("PDLEARN_PROGRESS", "off")
    for _ in progress.trange(3, desc="loop"):
        pass
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("PDLEARN_PROGRESS", "bars")
    with pytest.raises(ValueError, match="PDLEARN_PROGRESS='bars'"):
        progress.mode()
