"""Data-parallel training on two CPU processes (gloo): what DistributedDataParallel promises.

One launch of two ranks (torch.multiprocessing, a free port) runs every scenario;
each rank saves what it ends with, and the tests compare the files:
- both ranks end with identical weights, although they start from different ones;
- two ranks with batch B equal one process with batch 2B (the mean of the two ranks'
  losses, each drawn from that rank's generator), up to float round-off;
- an interrupted two-rank run resumes from its checkpoint to the uninterrupted weights;
- the two-rank checkpoint also resumes in a single process;
- progressive distillation (two rounds) runs under two processes;
- a DataLoader without a DistributedSampler is refused with the fix; with one, the
  ranks read disjoint halves of the data and each new epoch is shuffled anew.
"""
import os
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp

import pdlearn as pdl
from factories import make_mlp
from pdlearn import distributed
from pdlearn.train import fit, load_checkpoint, train_loop

pytestmark = pytest.mark.slow  # it trains or runs the command line: seconds a test

SCHED = pdl.CosineSchedule()
STEPS, BATCH, SEED = 8, 32, 3


small_net = make_mlp  # MLPDenoiser(dim=2, width=16, depth=1), seeded


def moons():
    return pdl.data.toy("moons", n=512, seed=0)


def loss_on(x, batch=BATCH):
    """The diffusion loss on a minibatch that ``gen`` draws from x (all randomness from gen)."""
    def loss_fn(net, gen):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        return pdl.diffusion_loss(net, x[idx], SCHED, generator=gen)
    return loss_fn


def worker(rank, port, folder):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init()
    x, loss_fn = moons(), loss_on(moons())
    out = {"rank": distributed.rank(), "world": distributed.world_size()}
    # uninterrupted, from different initial weights on the two ranks
    net = small_net(seed=rank)
    ema = fit(net, loss_fn, STEPS, seed=SEED, ema_decay=0.9, progress=False)
    out.update(net=net.state_dict(), ema=ema.state_dict(), history=ema.history["loss"])
    # interrupted at half way (checkpoint every 4 steps), then resumed by a fresh network
    ckpt = os.path.join(folder, "run.pt")
    for state in train_loop(small_net(seed=rank), loss_fn, STEPS, seed=SEED, ema_decay=0.9, progress=False,
                            checkpoint=ckpt, checkpoint_every=STEPS // 2):
        if state["step"] == STEPS // 2:
            break
    distributed.barrier()
    if distributed.is_main():  # kept for the one-process resume below
        shutil.copyfile(ckpt, os.path.join(folder, "half.pt"))
    resumed = small_net(seed=20 + rank)
    ema_resumed = fit(resumed, loss_fn, STEPS, seed=SEED, ema_decay=0.9, progress=False, checkpoint=ckpt,
                      checkpoint_every=STEPS // 2, resume=True)
    out.update(resumed=resumed.state_dict(), ema_resumed=ema_resumed.state_dict())
    # progressive distillation, two rounds
    student, history = pdl.progressive_distill(ema, x, SCHED, start_steps=4, end_steps=1, iters_per_round=3,
                                               batch_size=BATCH, seed=SEED, progress=False)
    out.update(student=student.state_dict(), distill_losses=[r["losses"] for r in history])
    # a DataLoader must shard the data by rank: refused without a DistributedSampler, trained with one
    dataset = torch.utils.data.TensorDataset(x)
    try:
        pdl.train_diffusion(small_net(), torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True),
                            SCHED, steps=1, progress=False)
        out["loader_error"] = ""
    except ValueError as err:
        out["loader_error"] = str(err)
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=SEED)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=sampler)
    pdl.train_diffusion(small_net(), loader, SCHED, steps=len(loader) + 1, progress=False)  # into a second epoch
    out.update(sampler_epoch=sampler.epoch, sampled=torch.tensor(list(iter(sampler))))
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    distributed.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(worker, args=(free_port(), folder), nprocs=2, join=True)
    results = [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    return folder, results


def assert_equal_states(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def assert_close_states(a, b, **tol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m: f"{k}: {m}")


def max_difference(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_both_ranks_end_with_identical_weights(ranks):
    _, (r0, r1) = ranks
    assert (r0["rank"], r0["world"], r1["rank"]) == (0, 2, 1)
    for key in ("net", "ema", "resumed", "ema_resumed", "student"):
        assert_equal_states(r0[key], r1[key])
    assert r0["history"] == r1["history"]  # the recorded loss is the mean over the ranks


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(ranks):
    _, (r0, _) = ranks
    x = moons()
    loss_fn = loss_on(x)
    g1 = torch.Generator().manual_seed(distributed.rank_seed(SEED, 1))  # rank 1's stream, here in one process

    def both_ranks(net, gen):  # gen is rank 0's stream: seeded with SEED
        return (loss_fn(net, gen) + loss_fn(net, g1)) / 2

    net = small_net(seed=0)  # rank 0's initial weights, which DDP broadcast to rank 1
    ema = fit(net, both_ranks, STEPS, seed=SEED, ema_decay=0.9, progress=False)
    assert_close_states(net.state_dict(), r0["net"], rtol=1e-5, atol=1e-6)
    assert_close_states(ema.state_dict(), r0["ema"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(ema.history["loss"]), torch.tensor(r0["history"]), rtol=1e-5, atol=1e-6)
    # and the two ranks did not simply train on rank 0's batches twice
    alone = small_net(seed=0)
    fit(alone, loss_fn, STEPS, seed=SEED, ema_decay=0.9, progress=False)
    assert max_difference(alone.state_dict(), r0["net"]) > 1e-4


def test_an_interrupted_two_rank_run_resumes_exactly(ranks):
    folder, (r0, _) = ranks
    assert_equal_states(r0["resumed"], r0["net"])
    assert_equal_states(r0["ema_resumed"], r0["ema"])
    half = load_checkpoint(os.path.join(folder, "half.pt"))
    assert half["step"] == STEPS // 2 and len(half["rngs"]) == 2
    assert not torch.equal(half["rngs"][0], half["rngs"][1])  # every rank's own generator is saved


def test_a_two_rank_checkpoint_resumes_in_one_process(ranks, tmp_path):
    folder, (r0, _) = ranks
    path = tmp_path / "half.pt"
    shutil.copyfile(os.path.join(folder, "half.pt"), path)
    ema = fit(small_net(seed=5), loss_on(moons()), STEPS, seed=SEED, ema_decay=0.9, progress=False,
              checkpoint=str(path), checkpoint_every=STEPS // 2, resume=True)
    history = ema.history["loss"]
    assert len(history) == STEPS and history[:STEPS // 2] == r0["history"][:STEPS // 2]
    assert all(torch.isfinite(v).all() for v in ema.state_dict().values())
    # rank 0 goes on alone, with half the batch: near the two-rank result, not equal to it
    assert max_difference(ema.state_dict(), r0["ema"]) > 1e-4


def test_progressive_distillation_runs_on_two_ranks(ranks):
    _, (r0, r1) = ranks
    assert [len(l) for l in r0["distill_losses"]] == [3, 3]
    assert r0["distill_losses"] == r1["distill_losses"]
    assert max_difference(r0["student"], r0["ema"]) > 1e-4  # the student has learned


def test_a_data_loader_must_shard_the_data_by_rank(ranks):
    _, (r0, r1) = ranks
    for r in (r0, r1):
        assert "every rank would draw the same minibatches" in r["loader_error"]
        assert "sampler=torch.utils.data.DistributedSampler(dataset)" in r["loader_error"]
        assert r["sampler_epoch"] == 1  # the loader ran out once, and the sampler was moved to epoch 1
    a, b = set(r0["sampled"].tolist()), set(r1["sampled"].tolist())
    assert len(a) == len(b) == 256 and not a & b  # 512 examples, half to each rank


def test_a_data_loader_in_one_process_needs_no_distributed_sampler():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(moons()), batch_size=BATCH, shuffle=True)
    net = pdl.train_diffusion(small_net(), loader, SCHED, steps=2, progress=False)
    assert len(net.history["loss"]) == 2


def test_a_distributed_sampler_moves_on_an_epoch_each_time_the_loader_runs_out():
    """Also inside a batch sampler, and counting on from the epoch the sampler is at (a second run
    on the same loader does not replay the shuffles of the first)."""
    dataset = torch.utils.data.TensorDataset(moons()[:64])
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=torch.utils.data.BatchSampler(sampler, 32, False))
    pdl.train_diffusion(small_net(), loader, SCHED, steps=5, progress=False)  # two batches an epoch: 0, 0, 1, 1, 2
    assert sampler.epoch == 2
    pdl.train_diffusion(small_net(), loader, SCHED, steps=3, progress=False)  # 2, 2, 3
    assert sampler.epoch == 3


def test_without_a_process_group_nothing_changes():
    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main() and distributed.rank_seed(7) == 7 and distributed.gather("a") == ["a"]
    x = torch.ones(3)
    assert distributed.mean(x) is x
