"""A simulated online A/B test on MovieLens 100K.

Each user's interactions are split as in the offline protocol (20% to
test, seed 0) and the test part is taken out of the database. Two model
versions are trained on what is left and served side by side in an
experiment. Then, for a few rounds, every user is shown a list and
clicks exactly the items of it that are in their test set, each click
carrying the list's recommendation_id. The script prints each arm's CTR
with its 95% interval and the test of their difference, and renders the
experiment's admin page as a staff user would see it.

    python bench/ab_simulation.py [--control explicit] [--treatment auto]
"""

import argparse
import io
import json
import tempfile
from pathlib import Path

from harness import setup_django

TRAIN_FLAGS = {
    "explicit": ["--feedback", "explicit"],
    "implicit": ["--feedback", "implicit"],
    "auto": ["--feedback", "auto"],
    "ease": ["--algorithm", "ease"],
}


def hold_out_test_items(seed, test_size):
    """Delete the protocol's test interactions; return them by user pk."""
    import numpy as np

    from events.models import Interaction
    from recommendations.engine.metrics import split_mask

    rows = list(
        Interaction.objects.order_by("pk").values_list(
            "pk", "user_id", "item__external_id"
        )
    )
    test = split_mask(len(rows), test_size, seed)
    held = {}
    for (_, user, item), out in zip(rows, test.tolist(), strict=True):
        if out:
            held.setdefault(user, set()).add(item)
    doomed = [row[0] for row, out in zip(rows, test.tolist(), strict=True) if out]
    for start in range(0, len(doomed), 900):
        Interaction.objects.filter(pk__in=doomed[start : start + 900]).delete()
    return held, int(np.count_nonzero(test))


def train(name):
    from django.core.management import call_command

    from recommendations.models import ModelVersion

    call_command("train", *TRAIN_FLAGS[name], "--no-activate", stdout=io.StringIO())
    return ModelVersion.objects.order_by("-pk").first()


def play(held, experiment, rounds):
    from events.ingestion import store_event
    from events.models import EndUser
    from events.validation import EventMessage
    from recommendations.impressions import impressions
    from recommendations.serving import holder

    holder.refresh(force=True)
    users = list(EndUser.objects.filter(pk__in=held))
    for _ in range(rounds):
        for user in users:
            shown = holder.recommend(user, n=10)
            impressions.record(user, shown, experiment.pk)
            for item in shown.item_ids:
                if item in held[user.pk]:
                    click = EventMessage(
                        "click", item, None, None, shown.recommendation_id
                    )
                    store_event(user, click)
    impressions.flush()


def render_admin(experiment):
    from django.contrib.auth.models import User
    from django.test import Client

    staff = User.objects.create_superuser("ab-admin", "ab@example.com", "ab-pass-123")
    client = Client(HTTP_HOST="localhost")
    client.force_login(staff)
    response = client.get(f"/admin/recommendations/experiment/{experiment.pk}/change/")
    return response.status_code, response.content.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", choices=list(TRAIN_FLAGS), default="explicit")
    parser.add_argument("--treatment", choices=list(TRAIN_FLAGS), default="auto")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rtrec-ab-") as workdir:
        setup_django(Path(workdir))
        from django.conf import settings
        from django.core.management import call_command

        from recommendations.models import Experiment
        from recommendations.online import experiment_report

        call_command(
            "import_movielens", str(settings.RTREC["DATA_DIR"]), stdout=io.StringIO()
        )
        held, n_test = hold_out_test_items(args.seed, 0.2)
        control, treatment = train(args.control), train(args.treatment)
        experiment = Experiment.objects.create(
            name="simulated", control=control, treatment=treatment, is_active=True
        )
        play(held, experiment, args.rounds)
        report = experiment_report(experiment)
        status, page = render_admin(experiment)

    report.update(
        control=f"{args.control} ({control.version})",
        treatment=f"{args.treatment} ({treatment.version})",
        users=len(held),
        held_out_interactions=n_test,
        admin_page_status=status,
        admin_page_shows_ctr="CTR" in page,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['users']} users, {args.rounds} rounds of 10 items each")
    for arm in ("control", "treatment"):
        figures = report["arms"][arm]
        print(
            f"{arm:<10} {report[arm]:<40} impressions {figures['impressions']:>6}"
            f"  clicks {figures['clicks']:>5}  CTR {figures['ctr']:.4f}"
            f"  [{figures['ctr_low']:.4f}, {figures['ctr_high']:.4f}]"
        )
    verdict = "significant" if report["significant"] else "not significant"
    print(
        f"difference {report['difference']:+.4f}, z {report['z']:.2f}, "
        f"p {report['p_value']:.2g}: {verdict} at 5%"
    )
    print(f"admin page: HTTP {status}, shows CTR: {report['admin_page_shows_ctr']}")


if __name__ == "__main__":
    main()
