"""`train --feedback explicit --no-evaluate` beside a bare Surprise fit.

The command skips the offline protocol, whose second fit and full
ranking are an evaluation rather than part of producing the model; what
is left (the fit, the holdout RMSE, the neighbours, the artifact and the
version row) is what the target judges against the bare fit.

Each side runs in a process of its own, so that its peak memory is its
own: the command as an operator types it, and this module run with
`--bare-fit`, which reads the ratings the way `train` does, keeps the rows
`train` fits on (all but its seeded holdout) and times Surprise's
`construct_trainset` and `SVD.fit` with the same hyper-parameters.

    python bench/training_cost.py --bare-fit   # on RTREC_VAR_DIR's database
    python bench/training_cost.py --both DIR   # both sides, on DIR's database
"""

import argparse
import json
import os
import re
import secrets
import time

from harness import ROOT, run_measured, server_env, setup_django_here

TRAINED_IN = re.compile(r"trained in ([0-9.]+)s")
TRAIN_ARGUMENTS = ("train", "--feedback", "explicit", "--no-evaluate")


def measure_training(var_dir, repeat):
    """Wall time and peak memory of `train` and of the bare fit, per run."""
    env = server_env(var_dir)
    runs = []
    for _ in range(repeat):
        train_wall, train_peak, output = run_measured(
            ROOT / "manage.py", *TRAIN_ARGUMENTS, env=env
        )
        found = TRAINED_IN.search(output)
        if found is None:
            raise SystemExit(f"train printed no time: {output[-500:]}")
        _, bare_peak, output = run_measured(
            ROOT / "bench" / "training_cost.py", "--bare-fit", env=env
        )
        bare = json.loads(output.strip().splitlines()[-1])
        runs.append(
            {
                "train_seconds": float(found.group(1)),
                "train_wall_seconds": train_wall,
                "train_peak_kib": train_peak,
                "bare_peak_kib": bare_peak,
                **bare,
            }
        )
    return runs


def bare_fit():
    """Read the ratings as `train` does, then fit Surprise alone."""
    setup_django_here()
    from surprise import Dataset, Reader

    from recommendations.training import (
        TrainingSettings,
        holdout_mask,
        read_ratings,
        surprise_rows,
        svd_for,
    )

    options = TrainingSettings(feedback="explicit").resolved()
    started = time.perf_counter()
    table = read_ratings()
    read_seconds = time.perf_counter() - started

    kept = ~holdout_mask(len(table), options.holdout, options.seed)
    rows = surprise_rows(table, kept)
    started = time.perf_counter()
    trainset = Dataset(Reader(rating_scale=(1, 5))).construct_trainset(rows)
    svd_for(options).fit(trainset)
    fit_seconds = time.perf_counter() - started
    return {
        "ratings": len(table),
        "read_seconds": read_seconds,
        "bare_fit_seconds": fit_seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    side = parser.add_mutually_exclusive_group(required=True)
    side.add_argument("--bare-fit", action="store_true")
    side.add_argument(
        "--both",
        metavar="VAR_DIR",
        help="time train and the bare fit on the SQLite database in VAR_DIR, "
        "for sizes outside bench/run.py (such as generate_synthetic --size 10m)",
    )
    args = parser.parse_args()
    if args.both:
        # Its processes run with DEBUG off, as the suite's do.
        os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
        print(json.dumps(measure_training(args.both, repeat=1), indent=2))
    else:
        print(json.dumps(bare_fit()))
