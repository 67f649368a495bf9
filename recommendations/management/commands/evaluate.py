import json
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError

from recommendations.evaluation import (
    Protocol,
    evaluate_popularity,
    evaluate_settings,
)
from recommendations.models import ModelVersion
from recommendations.training import (
    NothingToTrain,
    TrainingSettings,
    read_interactions,
)

COLUMNS = [
    ("precision", "P@K"),
    ("recall", "R@K"),
    ("ndcg", "NDCG@K"),
    ("map", "MAP@K"),
    ("hit_rate", "hit rate"),
    ("coverage", "coverage"),
    ("novelty", "novelty"),
    ("rmse", "RMSE"),
    ("mae", "MAE"),
]
# The alternatives measured beside the active settings.
ALTERNATIVES = {
    "svd, explicit": TrainingSettings(algorithm="svd", feedback="explicit"),
    "svd, implicit": TrainingSettings(algorithm="svd", feedback="implicit"),
    "ease": TrainingSettings(algorithm="ease", feedback="implicit"),
}


def _fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("must be between 0 and 1")
    return value


class Command(BaseCommand):
    help = (
        "Measure the active model's settings and popularity on a reproducible "
        "split: every interaction goes to test with probability --test-size."
    )

    def add_arguments(self, parser):
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--test-size", type=_fraction, default=0.2)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--only-active",
            action="store_true",
            help="skip the alternative algorithms",
        )

    def handle(self, *args, **options):
        if options["k"] < 1:
            raise CommandError("--k must be at least 1")
        protocol = Protocol(options["k"], options["test_size"], options["seed"])
        interactions = read_interactions()
        if len(interactions) == 0:
            raise CommandError("no interactions are stored: nothing to evaluate")

        rows = {"popularity": evaluate_popularity(interactions, protocol)}
        try:
            for name, settings in self._candidates(options["only_active"]).items():
                rows[name] = evaluate_settings(
                    interactions, settings.resolved(), protocol
                )
        except NothingToTrain as exc:
            raise CommandError(str(exc)) from None

        if options["json"]:
            self.stdout.write(json.dumps({"protocol": vars(protocol), "rows": rows}))
        else:
            self.stdout.write(self._table(rows, protocol))

    def _candidates(self, only_active):
        active = ModelVersion.objects.active()
        current = TrainingSettings()
        label = "default settings (no active model)"
        if active is not None:
            known = TrainingSettings.__dataclass_fields__
            params = {k: v for k, v in active.params.items() if k in known}
            current = replace(current, **params)
            label = f"active {active.version}"
        if current.feedback == "auto":
            current = replace(current, feedback="implicit")

        candidates = {f"{label}: {current.algorithm}, {current.feedback}": current}
        if only_active:
            return candidates
        for name, settings in ALTERNATIVES.items():
            same = (settings.algorithm, settings.feedback) == (
                current.algorithm,
                current.feedback,
            )
            if not same:
                candidates[name] = settings
        return candidates

    def _table(self, rows, protocol):
        k = protocol.k
        width = max(len(name) for name in rows) + 2
        header = "".join(f"{title.replace('K', str(k)):>10}" for _, title in COLUMNS)
        lines = [
            f"split: {protocol.test_size:.0%} of interactions to test, seed "
            f"{protocol.seed}; users ranked: {rows['popularity']['users']}",
            f"{'':<{width}}{header}",
        ]
        for name, figures in rows.items():
            cells = "".join(_cell(figures.get(key)) for key, _ in COLUMNS)
            lines.append(f"{name:<{width}}{cells}")
        return "\n".join(lines)


def _cell(value):
    return f"{'-':>10}" if value is None else f"{value:>10.4f}"
