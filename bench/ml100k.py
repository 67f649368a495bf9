"""MovieLens 100K figures: import, training and scoring, side by side.

Runs against a throwaway SQLite database and model folder, so it never
touches var/. Every ratio is measured in the same run, because the
machines this runs on are shared and noisy.

    python bench/ml100k.py [--repeat 3] [--json]
"""

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness import setup_django


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def spread(samples):
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": len(samples),
    }


def bench_import(data_dir):
    from django.core.management import call_command

    seconds, _ = timed(
        call_command, "import_movielens", str(data_dir), stdout=io.StringIO()
    )
    return seconds


def bench_training(repeat):
    """`train`'s whole path beside a bare Surprise fit on the same ratings."""
    from surprise import Dataset, Reader

    from recommendations.training import (
        TrainingSettings,
        fit_model,
        holdout_mask,
        read_interactions,
        read_ratings,
        surprise_rows,
        svd_for,
        train_model,
    )

    # The bare fit sees exactly the rows `train` fits on, with the same
    # hyper-parameters: all the ratings but the holdout.
    options = TrainingSettings(feedback="explicit").resolved()
    table = read_ratings()
    kept = ~holdout_mask(len(table), options.holdout, options.seed)
    rows = surprise_rows(table, kept)

    fits, whole, bare, rmse = [], [], [], None
    for _ in range(repeat):
        seconds, fitted = timed(fit_model, read_interactions(), options)
        fits.append(seconds)
        rmse = fitted.metrics["rmse"]
        seconds, _ = timed(train_model, options)
        whole.append(seconds)

        started = time.perf_counter()
        trainset = Dataset(Reader(rating_scale=(1, 5))).construct_trainset(rows)
        svd_for(options).fit(trainset)
        bare.append(time.perf_counter() - started)
    return fits, whole, bare, rmse


def bench_default_train():
    """`train` with no flags: both candidates measured, the better kept."""
    from recommendations.training import TrainingSettings, train_model

    seconds, version = timed(train_model, TrainingSettings())
    return seconds, version.feedback, version.metrics.get("explicit_rmse")


def bench_scoring(repeat, loops=200):
    """One user over every item: the served path against predict() per item."""
    import numpy as np
    from surprise import SVD, Dataset, Reader

    from recommendations.engine.scoring import score_items, top_n
    from recommendations.training import artifact_from_svd, read_ratings, surprise_rows

    table = read_ratings()
    rows = surprise_rows(table, np.ones(len(table), dtype=bool))
    trainset = Dataset(Reader(rating_scale=(1, 5))).construct_trainset(rows)
    algo = SVD(random_state=0)
    algo.fit(trainset)
    artifact = artifact_from_svd(algo, trainset)
    row = int(np.flatnonzero(artifact.user_ids == "196")[0])
    raw_items = artifact.item_ids.tolist()

    def vectorised():
        scores = score_items(
            artifact.item_factors,
            artifact.item_bias,
            artifact.global_mean,
            artifact.user_factors[row],
            artifact.user_bias[row],
        )
        return top_n(scores, 10)

    def predict_loop():
        estimates = [algo.predict("196", item).est for item in raw_items]
        return np.argsort(estimates)[::-1][:10]

    fast, slow = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(loops):
            vectorised()
        fast.append((time.perf_counter() - started) / loops)

        started = time.perf_counter()
        for _ in range(max(1, loops // 20)):
            predict_loop()
        slow.append((time.perf_counter() - started) / max(1, loops // 20))
    return fast, slow, len(raw_items)


def bench_event(n_events=300, seed=0):
    """Server work per event: store, fold in, score, filter, top 10.

    Timed in-process against the active model, beside scoring alone (the
    matrix-vector product and top-10 over the same catalog), so the
    difference is what storing and folding in add.
    """
    import numpy as np

    from events.ingestion import store_event
    from events.models import EndUser, Item
    from events.validation import EventMessage
    from recommendations.engine.scoring import score_items, top_n
    from recommendations.serving import holder

    rng = np.random.default_rng(seed)
    users = list(EndUser.objects.order_by("pk")[:200])
    items = list(Item.objects.values_list("external_id", flat=True))
    holder.refresh(force=True)
    model = holder.model

    whole, scoring = [], []
    for n in range(n_events):
        user = users[n % len(users)]
        event = EventMessage("click", items[rng.integers(len(items))], None, None)

        started = time.perf_counter()
        store_event(user, event)
        holder.recommend(user, n=10)
        whole.append(time.perf_counter() - started)

        started = time.perf_counter()
        scores = score_items(
            model.item_factors,
            model.item_bias,
            model.global_mean,
            model.user_factors[0],
            0.0,
        )
        top_n(scores, 10)
        scoring.append(time.perf_counter() - started)
    return whole[len(users) :], scoring[len(users) :]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data", default=os.environ.get("RTREC_DATA"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rtrec-bench-") as workdir:
        setup_django(Path(workdir))
        from django.conf import settings

        data_dir = Path(args.data) if args.data else settings.RTREC["DATA_DIR"]
        import_seconds = bench_import(data_dir)
        fits, whole, bare, rmse = bench_training(args.repeat)
        default_seconds, default_feedback, default_rmse = bench_default_train()
        fast, slow, n_items = bench_scoring(args.repeat)
        event_work, scoring_only = bench_event()

    report = {
        "import_seconds": import_seconds,
        "fit_seconds": spread(fits),
        "train_explicit_seconds": spread(whole),
        "bare_surprise_fit_seconds": spread(bare),
        "fit_over_bare_fit": statistics.median(fits) / statistics.median(bare),
        "heldout_rmse_explicit": rmse,
        "default_train_seconds": default_seconds,
        "default_train_feedback": default_feedback,
        "default_train_explicit_rmse": default_rmse,
        "items_scored": n_items,
        "score_one_user_vectorised_ms": spread([s * 1e3 for s in fast]),
        "score_one_user_predict_loop_ms": spread([s * 1e3 for s in slow]),
        "predict_loop_over_vectorised": statistics.median(slow)
        / statistics.median(fast),
        "event_work_ms": spread([s * 1e3 for s in event_work]),
        "scoring_alone_ms": spread([s * 1e3 for s in scoring_only]),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


def print_table(report):
    def line(name, sample, unit):
        print(
            f"{name:<44} {sample['median']:>10.3f} {unit}"
            f"  (min {sample['min']:.3f}, max {sample['max']:.3f}, "
            f"{sample['runs']} runs)"
        )

    print(f"{'import_movielens ml-100k':<44} {report['import_seconds']:>10.3f} s")
    line("fit (read, SVD, neighbours, holdout RMSE)", report["fit_seconds"], "s")
    line("bare Surprise SVD fit, same rows", report["bare_surprise_fit_seconds"], "s")
    print(f"{'  ratio fit / bare fit':<44} {report['fit_over_bare_fit']:>10.2f}")
    line(
        "train --feedback explicit (+ protocol)", report["train_explicit_seconds"], "s"
    )
    print(f"{'held-out RMSE, explicit':<44} {report['heldout_rmse_explicit']:>10.4f}")
    print(
        f"{'train, default flags':<44} {report['default_train_seconds']:>10.3f} s"
        f"  (chose {report['default_train_feedback']}; rating predictor RMSE "
        f"{report['default_train_explicit_rmse']:.4f})"
    )
    n = report["items_scored"]
    line(
        f"score user 196 over {n} items, vectorised",
        report["score_one_user_vectorised_ms"],
        "ms",
    )
    line(
        f"score user 196 over {n} items, predict() loop",
        report["score_one_user_predict_loop_ms"],
        "ms",
    )
    line("per event: store, fold in, score, top 10", report["event_work_ms"], "ms")
    line("  scoring alone, same catalog", report["scoring_alone_ms"], "ms")
    print(
        f"{'  ratio predict() loop / vectorised':<44} "
        f"{report['predict_loop_over_vectorised']:>10.1f}"
    )


if __name__ == "__main__":
    main()
