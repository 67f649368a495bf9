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


class Command(BaseCommand):
    help = "Train a Surprise SVD model on the stored interactions and activate it."

    def add_arguments(self, parser):
        defaults = TrainingSettings()
        parser.add_argument(
            "--factors", type=_positive_int, help="default: 100 explicit, 64 implicit"
        )
        parser.add_argument(
            "--epochs", type=_positive_int, help="default: 20 explicit, 30 implicit"
        )
        parser.add_argument("--lr", type=float, default=defaults.lr)
        parser.add_argument("--reg", type=float, default=defaults.reg)
        parser.add_argument(
            "--feedback",
            choices=["explicit", "implicit"],
            default=defaults.feedback,
        )
        parser.add_argument("--holdout", type=_fraction, default=defaults.holdout)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--no-activate", action="store_true")

    def handle(self, *args, **options):
        settings = TrainingSettings(
            factors=options["factors"],
            epochs=options["epochs"],
            lr=options["lr"],
            reg=options["reg"],
            feedback=options["feedback"],
            holdout=options["holdout"],
            seed=options["seed"],
        )
        try:
            version = train_model(settings, activate=not options["no_activate"])
        except NothingToTrain as exc:
            raise CommandError(str(exc)) from None

        if version.is_active:
            announce_model(version.version)
        self.stdout.write(self._summary(version))

    def _summary(self, version):
        metrics = " ".join(
            f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
            for name, value in version.metrics.items()
        )
        state = "active" if version.is_active else "not activated"
        return (
            f"model {version.version} ({state}): {version.n_interactions} "
            f"interactions, {version.n_users} users, {version.n_items} items, "
            f"{version.training_seconds:.1f}s; {metrics or 'no holdout'}"
        )
