import itertools
import json
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError

from recommendations.evaluation import Protocol, evaluate_settings
from recommendations.training import (
    NothingToTrain,
    TrainingSettings,
    read_interactions,
    save_defaults,
)

GRID = ("factors", "epochs", "lr", "reg")
# What "best" means: ranking figures go up, rating errors go down.
METRICS = {"ndcg": max, "precision": max, "map": max, "rmse": min}


class Command(BaseCommand):
    help = (
        "Grid search over factors, epochs, learning rate and regularisation on "
        "the evaluation protocol; prints the table, and with --save makes the "
        "best settings train's defaults for that feedback."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--feedback", choices=["explicit", "implicit"], default="implicit"
        )
        parser.add_argument("--factors", type=int, nargs="+", default=[32, 64])
        parser.add_argument("--epochs", type=int, nargs="+", default=[20, 30])
        parser.add_argument("--lr", type=float, nargs="+", default=[0.005, 0.01])
        parser.add_argument("--reg", type=float, nargs="+", default=[0.02, 0.08])
        parser.add_argument("--metric", choices=list(METRICS), default="ndcg")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--save", action="store_true")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        if options["metric"] == "rmse" and options["feedback"] != "explicit":
            raise CommandError("--metric rmse needs --feedback explicit")
        if any(v <= 0 for name in GRID for v in options[name]):
            raise CommandError("every grid value must be above 0")
        interactions = read_interactions()
        if len(interactions) == 0:
            raise CommandError("no interactions are stored: nothing to tune on")

        rows = self._search(interactions, options)
        best = METRICS[options["metric"]](rows, key=lambda r: r[options["metric"]])

        if options["json"]:
            self.stdout.write(json.dumps({"rows": rows, "best": best}))
        else:
            self.stdout.write(self._table(rows, best, options["metric"]))
        if options["save"]:
            chosen = {name: best[name] for name in GRID}
            path = save_defaults(options["feedback"], chosen)
            self.stdout.write(
                f"saved as train's {options['feedback']} defaults: {path}"
            )

    def _search(self, interactions, options):
        base = TrainingSettings(feedback=options["feedback"], seed=options["seed"])
        protocol = Protocol(seed=options["seed"])
        rows = []
        for values in itertools.product(*(options[name] for name in GRID)):
            settings = replace(base, **dict(zip(GRID, values, strict=True)))
            try:
                figures = evaluate_settings(interactions, settings.resolved(), protocol)
            except NothingToTrain as exc:
                raise CommandError(str(exc)) from None
            rows.append({**dict(zip(GRID, values, strict=True)), **figures})
            self.stderr.write(f"  tried {dict(zip(GRID, values, strict=True))}")
        return rows

    def _table(self, rows, best, metric):
        shown = ["ndcg", "precision", "map", "rmse"]
        lines = [
            f"{'factors':>8}{'epochs':>8}{'lr':>8}{'reg':>8}"
            + "".join(f"{name:>11}" for name in shown)
        ]
        for row in rows:
            marker = f"  <- best {metric}" if row is best else ""
            cells = "".join(
                f"{row[name]:>11.4f}" if name in row else f"{'-':>11}" for name in shown
            )
            lines.append(
                f"{row['factors']:>8}{row['epochs']:>8}{row['lr']:>8g}{row['reg']:>8g}"
                f"{cells}{marker}"
            )
        return "\n".join(lines)
