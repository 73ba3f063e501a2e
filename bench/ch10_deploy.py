"""Chapter 10: the 1-step digits student made small and fast, every variant measured on this CPU.

Prints one table, a row per variant of chapter 6's 1-step student (fp32 eager, compiled,
ONNX Runtime, bf16, int8 eager and compiled, quantization-aware int8 when post-training int8
is worse, channel-pruned and fine-tuned, 90% unstructured sparsity, and the two small
students), with parameters, file size (MB), peak activation memory at the throughput batch,
batch-1 latency per image (median; thread CPU time and wall time; 1 torch thread; all
variants interleaved), throughput at the big batch, and digits-FID beside its floor with the
verdict against the fp32 student. Then the targets of issue 20, each with whether it holds;
why batch-1 latency follows a network's operators rather than its FLOPs (the forward pass
alone of the fp32 student, the small student and two one-level shapes); and the batch-1
latency of the gpu budget's MNIST- and CIFAR-sized UNets (random weights:
timing does not depend on them) against a 30 fps frame budget.

The digits teacher and its students come from pdl.recipes (trained by chapters 5 and 6;
trained here if missing). The small students, the fine-tunes and the ONNX file are
checkpointed under $PDLEARN_CHECKPOINTS, so a second run only measures.

    PDLEARN_BUDGET=cpu PDLEARN_CHECKPOINTS=$PWD/checkpoints python bench/ch10_deploy.py [--no-compile]
"""
import argparse
import os
import time

import torch

import pdlearn as pdl
from pdlearn import deploy, speed

IMAGE_SHAPES = {"mnist": (1, 28), "cifar10": (3, 32)}  # (channels, size) of the gpu budget's sets
# the compiled fp32 student shares the student's FID: ``check_compiled`` asserts they are equal. The compiled
# int8 graph is scored on its own samples: its fused kernels need not round as the eager int8 graph does
SAME = {"compiled": "fp32 student"}


def check_compiled(variants, cfg):
    """Each compiled form equals its eager graph to 1e-4 at the batch sizes it is run at."""
    for name, same in SAME.items():
        if name in variants:
            diffs = deploy.max_abs_diff(variants[name][0], variants[same][0], batch_sizes=(1, cfg["big_batch"]))
            if max(diffs.values()) > 1e-4:
                raise AssertionError(f"{name} differs from {same} by {max(diffs.values()):.1e}: {diffs}")


def onnx_file(net, name):
    """The network's ONNX file under the checkpoint folder, exported unless a file of these weights is there."""
    path = pdl.checkpoint_path(f"{name}-{pdl.distill.fingerprint(net)}").replace(".pt", ".onnx")
    return path if os.path.exists(path) else deploy.to_onnx(net, path)


def build_variants(cfg, sched, compile_=True, progress=True):
    """Every variant of the 1-step student: {name: (network, steps, parameters)}, and notes."""
    students, _ = pdl.recipes.image_students(progress=progress)
    _, x = pdl.recipes.image_teacher(progress=progress)
    s1 = students[1]
    params = pdl.models.count_parameters
    small_channels = s1.config["channels"] // cfg["shrink"]
    variants = {"fp32 student (2 steps)": (students[2], 2, params(students[2])),
                "fp32 student": (s1, 1, params(s1))}
    notes = {}
    if compile_:
        variants["compiled"] = (deploy.compiled(s1), 1, params(s1))
    if deploy.onnx_available() is True:
        variants["ONNX Runtime"] = (deploy.OnnxRuntimeNet(onnx_file(s1, "digits_student1"), s1), 1, params(s1))
    else:
        notes["ONNX Runtime"] = deploy.onnx_available()
    if deploy.bf16_native():
        variants["bf16"] = (deploy.to_bf16(s1), 1, params(s1))
    else:
        notes["bf16"] = "this CPU has no native bf16 (no avx512_bf16 / amx_bf16): skipped"
    if deploy.int8_available() is True:
        calibration = deploy.trajectory_inputs(s1, sched, 1, cfg["calib_n"], seed=1)  # seed 0 is the evaluation's
        q = deploy.int8(s1, calibration)
        variants["int8 (eager graph)"] = (q, 1, params(s1))
        if compile_:
            variants["int8 compiled"] = (deploy.compiled(q.module, like=s1), 1, params(s1))
    else:
        notes["int8"] = deploy.int8_available()
    pruned = deploy.prune_channels(s1, cfg["prune_keep"])
    pruned = deploy.mimic(pruned, s1, sched, 1, cfg["prune_iters"], batch_size=cfg["batch_size"], resume=True,
                          checkpoint=pdl.checkpoint_path("digits_pruned"), progress=progress, desc="pruned: fine-tune")
    variants[f"pruned ({cfg['prune_keep']:.0%} of block channels), fine-tuned"] = (pruned, 1, params(pruned))
    variants[f"{cfg['sparsity']:.0%} unstructured sparsity"] = (deploy.sparsify(s1, cfg["sparsity"]), 1, params(s1))
    prog, _ = deploy.distil_progressive(students[cfg["teacher_steps"]], deploy.small_unet(s1, channels=small_channels, attention=cfg["small_attention"]),
                                        x, sched, cfg["teacher_steps"], cfg["first_iters"], cfg["iters_per_round"],
                                        lr=cfg["lr"], batch_size=cfg["batch_size"], resume=True, progress=progress,
                                        checkpoint=pdl.checkpoint_path("digits_small_progressive"))
    source = cfg["pairs_source_steps"]  # pairs of the full-size 2-step student
    pairs = deploy.distil_from_pairs(students[source], deploy.small_unet(s1, channels=small_channels,
                                                                         attention=cfg["small_attention"]),
                                     sched, cfg["pairs_iters"], source_steps=source, lr=cfg["lr"],
                                     batch_size=cfg["batch_size"], resume=True, progress=progress,
                                     checkpoint=pdl.checkpoint_path("digits_small_pairs"))
    variants["small, progressive from scratch"] = (prog[1], 1, params(prog[1]))
    variants["small, fresh pairs"] = (pairs, 1, params(pairs))
    return variants, notes, s1


def quality(variants, sched, cfg):
    """digits-FID of n_eval samples (seed 0) per variant, the floor, and the verdict against the fp32 student."""
    floor = pdl.metrics.image_fid_floor(cfg["n_eval"], "digits", repeats=cfg["floor_repeats"])
    fids = {}
    for name, (net, steps, _) in variants.items():
        if name in SAME:
            continue
        with torch.no_grad():
            fids[name] = pdl.metrics.image_fid(pdl.ddim_sample(net, sched, n=cfg["n_eval"], steps=steps, seed=0),
                                               "digits")
    fids |= {name: fids[same] for name, same in SAME.items() if name in variants}
    ref = fids["fp32 student"]
    verdicts = {name: pdl.metrics.verdict(f, ref, floor[1]) for name, f in fids.items()}
    return fids, verdicts, floor


def table(variants, sched, cfg, fids, verdicts, floor):
    nets = {name: (net, steps) for name, (net, steps, _) in variants.items()}
    one = deploy.latency(nets, sched, batch_size=1, repeats=cfg["repeats"], warmup=cfg["warmup"])
    big = deploy.latency(nets, sched, batch_size=cfg["big_batch"], repeats=cfg["repeats"], warmup=cfg["warmup"])
    rows = []
    for name, (net, steps, n_params) in variants.items():
        z = pdl.sampling.NoiseSource(cfg["big_batch"], net.sample_shape).randn()
        with torch.no_grad(), pdl.timing.num_threads(1):
            peak, _ = deploy.peak_memory_mb(lambda: pdl.ddim_sample(net, sched, z=z, steps=steps))
        rows.append(dict(variant=name, steps=steps, params=n_params, file_mb=deploy.file_mb(net),
                         peak_mb=None if getattr(net, "kind", "") in ("onnxruntime", "compiled") else peak,
                         thread_ms=one[name]["thread_ms"], wall_ms=one[name]["wall_ms"],
                         spread_ms=one[name]["thread_spread_ms"], images_per_s=big[name]["images_per_s"],
                         fid=fids[name], verdict=verdicts[name]))
    return rows, one


def targets(rows, one, variants, s1, cfg):
    by = {r["variant"]: r for r in rows}
    fp32 = by["fp32 student"]
    lines = []
    if "int8 (eager graph)" in by:
        q = by["int8 (eager graph)"]
        ratio = q["file_mb"] / fp32["file_mb"]
        lines.append(f"int8 file {ratio:.2f}x fp32 (target <= 0.35: {ratio <= 0.35}); digits-FID verdict against "
                     f"fp32: {q['verdict']} (target tie: {q['verdict'] == 'tie'})")
    if "ONNX Runtime" in by:
        diffs = deploy.max_abs_diff(variants["ONNX Runtime"][0], s1, batch_sizes=(1, 3, 64))
        r = pdl.timing.paired(one["ONNX Runtime"]["timing"], one["fp32 student"]["timing"])
        lines.append(f"ONNX Runtime max |diff| to eager over batches 1, 3, 64: {max(diffs.values()):.1e} (<= 1e-4: "
                     f"{max(diffs.values()) <= 1e-4}); batch-1 latency ratio to eager {r['ratio']:.2f} +- "
                     f"{r['spread']:.2f} (aim <= 1.0: {r['ratio'] <= 1.0})")
    if "compiled" in by:
        diffs = deploy.max_abs_diff(variants["compiled"][0], s1, batch_sizes=(1, cfg["big_batch"]))
        r = pdl.timing.paired(one["compiled"]["timing"], one["fp32 student"]["timing"])
        lines.append(f"compiled max |diff| to eager: {max(diffs.values()):.1e}; batch-1 latency ratio to eager "
                     f"{r['ratio']:.2f} +- {r['spread']:.2f}")
    sparse = next(n for n in by if "unstructured" in n)
    r = pdl.timing.paired(one[sparse]["timing"], one["fp32 student"]["timing"])
    lines.append(f"{sparse}: batch-1 latency ratio to dense {r['ratio']:.2f} +- {r['spread']:.2f}, against 1: "
                 f"{pdl.metrics.verdict(r['ratio'], 1.0, r['spread'])} (a dense kernel multiplies zeros too)")
    for name in ("small, progressive from scratch", "small, fresh pairs"):
        s = by[name]
        p, f = s["params"] / fp32["params"], s["fid"] / fp32["fid"]
        r = pdl.timing.paired(one[name]["timing"], one["fp32 student"]["timing"])
        lines.append(f"{name}: {p:.2f}x the parameters (<= 0.25: {p <= 0.25}), 1-step FID {f:.2f}x the full-size "
                     f"student's (<= 1.3: {f <= 1.3}), batch-1 latency {r['ratio']:.2f} +- {r['spread']:.2f}x "
                     f"(<= 0.5: {r['ratio'] <= 0.5})")
    return lines


def work(variants, s1, cfg):
    """One forward pass at batch 1 of the fp32 student, the small student on fresh pairs and two untrained
    one-level shapes: parameters, MFLOP, ATen operators, thread-CPU ms (1 thread, interleaved) and its paired
    ratio to the fp32 student's."""
    small = variants["small, fresh pairs"][0]
    one_level = dict(ch_mult=(1,), attention=False)
    nets = {"fp32 student": s1, "small, fresh pairs": small,
            f"{small.config['channels']} channels, one level": deploy.small_unet(s1, channels=small.config["channels"],
                                                                               **one_level),
            f"{s1.config['channels']} channels, one level": deploy.small_unet(s1, **one_level)}
    nets = {name: net.eval() for name, net in nets.items()}
    fwd = deploy.forward_ms(nets, repeats=cfg["repeats"], warmup=cfg["warmup"])
    rows = []
    for name, net in nets.items():
        w = deploy.work(net)
        r = pdl.timing.paired(fwd[name]["timing"], fwd["fp32 student"]["timing"])
        rows.append(dict(network=name, params=pdl.models.count_parameters(net), mflop=w["mflop"],
                         operators=w["operators"], forward_ms=fwd[name]["thread_ms"], ratio=r["ratio"],
                         spread=r["spread"], us_per_operator=1e3 * fwd[name]["thread_ms"] / w["operators"]))
    return rows


def scaling(cfg, sched):
    """Batch-1 latency of the gpu budget's UNet at MNIST and CIFAR-10 sizes, 1 thread, eager fp32 and ONNX Runtime."""
    gpu = pdl.sizes("image_teacher", "gpu")
    rows = []
    for name, (channels, size) in IMAGE_SHAPES.items():
        torch.manual_seed(0)
        net = pdl.models.UNet(in_channels=channels, image_size=size, channels=gpu["channels"], ch_mult=gpu["ch_mult"],
                              num_res_blocks=gpu["num_res_blocks"]).eval()
        nets = {"eager": (net, 1)}
        if deploy.onnx_available() is True:
            nets["ONNX Runtime"] = (deploy.OnnxRuntimeNet(onnx_file(net, f"{name}_sized_unet"), net), 1)
        timed = deploy.latency(nets, sched, batch_size=1, repeats=cfg["scale_repeats"], warmup=1)
        for engine, t in timed.items():
            for steps in cfg["scale_steps"]:
                ms = steps * t["thread_ms"]  # one network evaluation per step dominates at these sizes
                rows.append(dict(unet=f"{name}-sized", engine=engine, params=pdl.models.count_parameters(net),
                                 steps=steps, ms_per_image=ms, wall_ms=steps * t["wall_ms"], fps=1e3 / ms,
                                 at_30fps=ms <= 1e3 / 30))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    args = parser.parse_args()
    cfg, sched = pdl.sizes("deploy"), pdl.CosineSchedule()
    began = time.perf_counter()
    variants, notes, s1 = build_variants(cfg, sched, compile_=not args.no_compile)
    check_compiled(variants, cfg)
    fids, verdicts, floor = quality(variants, sched, cfg)
    if "int8 (eager graph)" in variants and verdicts["int8 (eager graph)"] == "worse":
        qat = deploy.qat_int8(s1, sched, 1, cfg["qat_iters"], batch_size=cfg["batch_size"], resume=True,
                              checkpoint=pdl.checkpoint_path("digits_qat"))
        variants["int8, quantization-aware"] = (qat, 1, variants["fp32 student"][2])
        fids, verdicts, floor = quality(variants, sched, cfg)
    rows, one = table(variants, sched, cfg, fids, verdicts, floor)
    print(f"\n### budget {pdl.budget()}: the 1-step digits student, {cfg['n_eval']} samples per FID, digits-FID "
          f"floor {floor[0]:.2f} +- {floor[1]:.2f}; latency: 1 torch thread, median of {cfg['repeats']}\n")
    print(speed.table(rows, ["variant", "steps", "params", "file_mb", "peak_mb", "thread_ms", "wall_ms", "spread_ms",
                             "images_per_s", "fid", "verdict"],
                      dict(params=",", file_mb=".3f", peak_mb=".2f", thread_ms=".3f", wall_ms=".3f", spread_ms=".3f",
                           images_per_s=",.0f", fid=".2f")))
    print(f"(peak_mb: activations at batch {cfg['big_batch']}, not measured for ONNX Runtime and compiled graphs; "
          f"images_per_s at batch "
          f"{cfg['big_batch']}, thread clock)")
    for name, note in notes.items():
        print(f"{name}: {note}")
    print("\n### targets\n")
    for line in targets(rows, one, variants, s1, cfg):
        print("-", line)
    print("\n### why: one forward pass at batch 1, 1 thread (ratio: paired, against the fp32 student)\n")
    print(speed.table(work(variants, s1, cfg), ["network", "params", "mflop", "operators", "forward_ms", "ratio",
                                                "spread", "us_per_operator"],
                      dict(params=",", mflop=".2f", forward_ms=".3f", ratio=".2f", spread=".2f",
                           us_per_operator=".1f")))
    print("\n### the gpu budget's UNets at batch 1, 1 thread (timing does not depend on the weights)\n")
    print(speed.table(scaling(cfg, sched), ["unet", "engine", "params", "steps", "ms_per_image", "wall_ms", "fps",
                                            "at_30fps"],
                      dict(params=",", ms_per_image=".2f", wall_ms=".2f", fps=".1f")))
    print(f"\nbench wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
