"""The image protocol of chapters 5 and 6 from the command line (see ``protocol``).

    python -m pdlearn teacher  --data mnist      train the UNet teacher, or resume it
    python -m pdlearn distill  --data mnist      progressive distillation, a checkpoint per round
    python -m pdlearn evaluate --data mnist      FID of the teacher's DDIM and of the students
    torchrun --nproc_per_node 4 -m pdlearn distill --data mnist     the same on 4 GPUs
"""
import argparse
import glob
import os
import sys

from . import distributed, protocol
from .budget import BUDGETS, budget, image_data, sizes
from .distill import check_steps_halve
from .metrics import FID_FEATURES, fid_features
from .images import IMAGE_SETS

PROTOCOL = """\
the protocol (chapters 5 and 6), one command per stage:
  1. teacher   a UNet diffusion teacher (v-prediction, cosine schedule) on the training split,
               sizes from the budget's 'image_teacher' row; checkpoint every 500 steps.
  2. distill   progressive distillation (Salimans & Ho, 2022): from --start-steps DDIM steps of
               the teacher, halving every round down to --end-steps, --iters-per-round
               iterations each (batch size and lr from the 'image_distill' row); a checkpoint
               per round and every --checkpoint-every iterations inside a round.
  3. evaluate  FID of n samples (the 'images_eval' row) against the held-out test split, for the
               teacher's DDIM at each --steps and for every student at its own step count,
               beside the data-vs-data floor at the same n (a perfect model scores about the floor).
               The digits use the shipped digits classifier; MNIST, Fashion-MNIST and CIFAR-10 the
               Inception FID (pip install "torchmetrics[image]"), or with --features classifier
               the features of a classifier of the set, trained on its training split on first
               use (no download: for a machine without internet). Beside the FID, the fraction
               of samples that classifier reads with probability > 0.9.

Resume: run the same command again. Finished stages and rounds load from their checkpoints, an
interrupted one continues from its last checkpoint; a stage trains the stages it needs when their
checkpoints are missing. Budgets (smoke, cpu, gpu) change sizes, never the code.

Several GPUs: torchrun --nproc_per_node 4 -m pdlearn distill --data mnist
Each rank trains on its own minibatches (the batch size is per rank), gradients are averaged,
rank 0 writes the checkpoints; evaluate runs in one process."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", choices=IMAGE_SETS,
                        help="image set (default: $PDLEARN_IMAGES, else the budget's: digits at smoke/cpu and "
                             "mnist at gpu)")
    common.add_argument("--budget", choices=BUDGETS, help="sizes to use (default: $PDLEARN_BUDGET, else gpu with "
                                                          "CUDA and cpu without)")
    common.add_argument("--checkpoint-dir", help="where checkpoints go (default: $PDLEARN_CHECKPOINTS, else "
                                                 "./checkpoints)")
    common.add_argument("--seed", type=int, default=0, help="seed of the networks, minibatches and samples")
    common.add_argument("--no-progress", action="store_true", help="no progress bars (for job logs)")
    common.add_argument("--fresh", action="store_true", help="start afresh: train every stage again and write over "
                                                             "its checkpoints instead of resuming from them")
    common.add_argument("--debug", action="store_true", help="on an error, show the full traceback too")
    rounds = argparse.ArgumentParser(add_help=False)
    rounds.add_argument("--start-steps", type=positive_int, help="DDIM steps of the teacher the first round halves")
    rounds.add_argument("--end-steps", type=positive_int, help="DDIM steps of the last student")
    rounds.add_argument("--iters-per-round", type=positive_int, help="training iterations of every round")
    rounds.add_argument("--checkpoint-every", type=positive_int, default=500,
                        help="iterations between checkpoints inside a round (default 500)")

    p = argparse.ArgumentParser(prog="python -m pdlearn", description="Train, distil and evaluate the image "
                                "diffusion models of the book outside a notebook.", epilog=PROTOCOL,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("teacher", parents=[common], help="train (or resume) the image teacher")
    sub.add_parser("distill", parents=[common, rounds], help="progressive distillation, round by round")
    ev = sub.add_parser("evaluate", parents=[common, rounds], help="FID of the teacher and students vs its floor")
    ev.add_argument("--steps", type=positive_int, nargs="+",
                    help="teacher DDIM step counts (default: the budget's 'images_eval' step_counts)")
    ev.add_argument("--n-eval", type=positive_int, help="samples per FID (default: the budget's 'images_eval')")
    ev.add_argument("--features", choices=FID_FEATURES,
                    help="what the FID compares: 'inception' (the standard FID; torchmetrics, weights download once) "
                         "or 'classifier' (a classifier of the set, trained on first use; no download). Default: "
                         "classifier for the digits, inception for the other sets")
    return p


def say(*args):
    if distributed.is_main():
        print(*args, flush=True)


def run(args):
    rounds = sizes("image_distill", args.budget)
    folder = os.environ.get("PDLEARN_CHECKPOINTS", "checkpoints")
    say(f"pdlearn {args.command}: data {args.data}, budget {args.budget}, seed {args.seed}, "
        f"{distributed.describe()}; checkpoints in {os.path.abspath(folder)}")
    progress = not args.no_progress
    if args.command == "teacher":
        say("teacher sizes:", sizes("image_teacher", args.budget))
        net, _ = protocol.teacher(args.data, args.budget, args.seed, progress, resume=not args.fresh)
        say(f"teacher: {len(net.history['loss'])} steps, last loss {net.history['loss'][-1]:.4f}")
    students = {}
    if args.command in ("distill", "evaluate"):
        say(f"distilling {args.start_steps} -> {args.end_steps} steps, {args.iters_per_round} iterations per round, "
            f"batch size {rounds['batch_size']} per process, lr {rounds['lr']}")
        for student, r in protocol.students(args.data, args.budget, args.start_steps, args.end_steps,
                                            args.iters_per_round, args.seed, args.checkpoint_every, progress,
                                            resume=not args.fresh):
            students[r["steps"]] = student
            say(f"round {r['round']}: {r['teacher_steps']} -> {r['steps']} steps, loss {r['loss']:.4f}, "
                f"{r['wall_s']:.1f} s{' (loaded)' if r['loaded'] else ''}")
    if args.command == "evaluate":
        ev = sizes("images_eval", args.budget)
        n, steps = args.n_eval or ev["n_eval"], args.steps or ev["step_counts"]
        net, _ = protocol.teacher(args.data, args.budget, args.seed, progress)
        networks = {f"teacher, DDIM {s}": (net, s) for s in steps}
        networks.update({f"student of round {k + 1}": (m, s) for k, (s, m) in enumerate(students.items())})
        features = fid_features(args.data, args.features)
        say(f"FID on {features} features of n = {n} samples against the {args.data} test split")
        rows, floor = protocol.evaluate(networks, args.data, n, ev["floor_repeats"], args.seed, features)
        say(protocol.format_rows(rows, floor))
    files = sorted(glob.glob(os.path.join(folder, f"{args.data}_*-{args.budget}*.pt")))
    say("checkpoints:\n  " + "\n  ".join(files) if files else "no checkpoints written")


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    try:
        args.budget = args.budget or budget()
        args.data = args.data or image_data(args.budget)
    except ValueError as err:  # a PDLEARN_BUDGET that is no budget, a PDLEARN_IMAGES that is no image set
        p.error(str(err))
    if args.command in ("distill", "evaluate"):
        rounds = sizes("image_distill", args.budget)
        for key in ("start_steps", "end_steps", "iters_per_round"):
            if getattr(args, key) is None:
                setattr(args, key, rounds[key])
        try:
            check_steps_halve(args.start_steps, args.end_steps)
        except ValueError as err:
            p.error(str(err))
    if args.command == "evaluate" and distributed.launched():
        p.error("evaluate runs in one process: python -m pdlearn evaluate ... (without torchrun)")
    if args.checkpoint_dir:
        os.environ["PDLEARN_CHECKPOINTS"] = args.checkpoint_dir  # read by budget.checkpoint_path
    os.environ["PDLEARN_BUDGET"] = args.budget  # read by what sizes itself alone (the metrics' classifier)
    distributed.init()
    try:
        run(args)
    except KeyboardInterrupt:
        print(f"python -m pdlearn {args.command}: interrupted; run the same command again to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130
    except Exception as err:  # every error: one message and a non-zero exit (the traceback with --debug)
        if args.debug:
            raise
        print(f"python -m pdlearn {args.command}: error: {err}\n(run again with --debug to see where it happened)",
              file=sys.stderr)
        return 1  # under torchrun, the launcher stops the other ranks
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
