import gc
from contextlib import contextmanager

from django.core.management.base import BaseCommand, CommandError

from recommendations.broadcast import announce_model
from recommendations.training import NothingToTrain, TrainingSettings, train_model


def _fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError("must be at least 0 and below 1")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _positive(text):
    value = float(text)
    if not value > 0:
        raise ValueError("must be above 0")
    return value


class Command(BaseCommand):
    help = (
        "Train a model on the stored interactions, record its metrics and "
        "activate it. --feedback auto (the default) measures the rating "
        "predictor and the implicit model on the evaluation protocol and "
        "keeps the one that ranks better. --no-evaluate skips the protocol, "
        "so costs about one fit: auto then trains the implicit model."
    )

    def add_arguments(self, parser):
        parser.add_argument("--algorithm", choices=["svd", "ease"], default="svd")
        parser.add_argument(
            "--feedback", choices=["explicit", "implicit", "auto"], default="auto"
        )
        parser.add_argument(
            "--factors", type=_positive_int, help="default: 100 explicit, 64 implicit"
        )
        parser.add_argument("--epochs", type=_positive_int, help="default: 30 for both")
        parser.add_argument("--lr", type=_positive, help="default: 0.01 / 0.005")
        parser.add_argument("--reg", type=_positive, help="default: 0.08 / 0.02")
        parser.add_argument(
            "--ease-reg", type=_positive, help="EASE's L2 strength, default 400"
        )
        parser.add_argument("--holdout", type=_fraction, default=0.1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-activate", action="store_true")
        parser.add_argument(
            "--no-evaluate",
            action="store_true",
            help="skip the offline protocol and its second fit; the version "
            "records evaluated=false and, for explicit feedback, the holdout "
            "RMSE; auto feedback then means implicit",
        )

    def handle(self, *args, **options):
        settings = TrainingSettings(
            algorithm=options["algorithm"],
            feedback=options["feedback"],
            factors=options["factors"],
            epochs=options["epochs"],
            lr=options["lr"],
            reg=options["reg"],
            ease_reg=options["ease_reg"],
            holdout=options["holdout"],
            seed=options["seed"],
        )
        try:
            with startup_objects_frozen():
                version = train_model(
                    settings,
                    activate=not options["no_activate"],
                    evaluate=not options["no_evaluate"],
                )
        except NothingToTrain as exc:
            raise CommandError(str(exc)) from None

        if version.is_active:
            announce_model(version.version)
        self.stdout.write(summary(version))


@contextmanager
def startup_objects_frozen():
    """Keep the garbage collector off the objects that exist already.

    Training allocates a tuple per row, and each full collection walks
    every object Django and its apps loaded at start, which live as long
    as the process anyway: on MovieLens 100K that made reading the rows
    60% slower than in a bare process.
    """
    # A process that froze its objects itself keeps them frozen.
    frozen_by_caller = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_by_caller:
            gc.unfreeze()


def summary(version):
    """What a version is and how it measured, in a few lines."""
    state = "active" if version.is_active else "not activated"
    lines = [
        f"model {version.version} ({state}): {version.algorithm}, "
        f"{version.feedback} feedback; {version.n_interactions} interactions, "
        f"{version.n_users} users, {version.n_items} items; "
        f"trained in {version.training_seconds:.2f}s"
    ]
    metrics = version.metrics
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    if flat:
        lines.append("  " + " ".join(f"{k}={_number(v)}" for k, v in flat.items()))
    for name, figures in metrics.get("candidates", {}).items():
        chosen = " (chosen)" if name == version.feedback else ""
        shown = {k: figures[k] for k in ("ndcg", "precision", "rmse") if k in figures}
        cells = " ".join(f"{k}={_number(v)}" for k, v in shown.items())
        lines.append(f"  candidate {name}{chosen}: {cells}")
    return "\n".join(lines)


def _number(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)
