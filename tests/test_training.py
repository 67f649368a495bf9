"""`manage.py train` on a small catalog held in the real database."""

import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from events.models import EndUser
from recommendations.engine.artifact import load_artifact
from recommendations.models import ModelVersion
from recommendations.training import catalog_codes, read_interactions

pytestmark = pytest.mark.django_db


def train(*args):
    out = io.StringIO()
    call_command("train", "--factors", "8", "--epochs", "10", *args, stdout=out)
    return out.getvalue()


def train_explicit(*args):
    return train("--feedback", "explicit", *args)


def protocol_must_not_run(*args, **kwargs):
    raise AssertionError("the offline protocol ran")


def test_it_refuses_to_train_on_an_empty_database():
    with pytest.raises(CommandError, match="no interactions"):
        train()

    assert ModelVersion.objects.count() == 0


def test_it_writes_an_artifact_and_an_active_version(catalog):
    output = train_explicit()

    version = ModelVersion.objects.get()
    assert version.is_active
    assert version.version in output
    assert "rmse=" in output
    assert version.params["factors"] == 8
    assert version.n_users == 30
    assert version.n_interactions == 30 * 12
    assert 0 < version.metrics["rmse"] < 2
    assert 0 < version.metrics["mae"] <= version.metrics["rmse"]
    assert version.training_seconds > 0

    artifact = load_artifact(version.artifact_path)
    assert artifact.item_factors.shape == (version.n_items, 8)
    assert artifact.user_factors.shape == (version.n_users, 8)


def test_a_new_version_replaces_the_active_one(catalog):
    train()
    train()

    assert ModelVersion.objects.count() == 2
    assert ModelVersion.objects.filter(is_active=True).count() == 1
    assert ModelVersion.objects.active() == ModelVersion.objects.order_by("pk").last()


def test_no_activate_leaves_the_served_version_alone(catalog):
    train()
    first = ModelVersion.objects.active()

    train("--no-activate")

    assert ModelVersion.objects.active() == first


def test_the_same_seed_trains_the_same_model(catalog):
    train("--seed", "3")
    train("--seed", "3")

    first, second = ModelVersion.objects.order_by("pk")
    a, b = load_artifact(first.artifact_path), load_artifact(second.artifact_path)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert first.metrics == second.metrics


@pytest.mark.parametrize(
    "args", [["--holdout", "1.5"], ["--factors", "0"], ["--feedback", "stars"]]
)
def test_it_rejects_bad_flags(catalog, args):
    with pytest.raises(CommandError):
        train(*args)

    assert ModelVersion.objects.count() == 0


def test_auto_keeps_the_feedback_that_ranks_better(catalog):
    output = train()

    version = ModelVersion.objects.get()
    candidates = version.metrics["candidates"]
    assert set(candidates) == {"explicit", "implicit"}
    best = max(candidates, key=lambda name: candidates[name]["ndcg"])
    assert version.feedback == best
    assert version.metrics["ndcg@10"] == candidates[best]["ndcg"]
    assert version.metrics["explicit_rmse"] == candidates["explicit"]["rmse"]
    assert f"candidate {best} (chosen)" in output


def test_no_evaluate_skips_the_protocol_and_keeps_the_holdout(catalog, monkeypatch):
    monkeypatch.setattr(
        "recommendations.evaluation.evaluate_settings", protocol_must_not_run
    )

    output = train_explicit("--no-evaluate")

    version = ModelVersion.objects.get()
    assert version.is_active
    assert version.metrics["evaluated"] is False
    assert 0 < version.metrics["rmse"] < 2
    assert "ndcg@10" not in version.metrics
    assert "evaluated=False" in output


def test_no_evaluate_trains_implicit_feedback_for_auto(catalog, monkeypatch):
    monkeypatch.setattr(
        "recommendations.evaluation.evaluate_settings", protocol_must_not_run
    )

    train("--no-evaluate")
    train("--no-evaluate", "--algorithm", "ease")

    first, second = ModelVersion.objects.order_by("pk")
    assert (first.algorithm, first.feedback) == ("svd", "implicit")
    assert (second.algorithm, second.feedback) == ("ease", "implicit")
    assert first.metrics == second.metrics == {"evaluated": False}
    assert first.params["factors"] == 8


def test_no_evaluate_fits_the_same_model_as_a_full_run(catalog):
    train_explicit("--seed", "5")
    train_explicit("--seed", "5", "--no-evaluate")

    full, quick = ModelVersion.objects.order_by("pk")
    a, b = load_artifact(full.artifact_path), load_artifact(quick.artifact_path)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(
        a.extras["neighbour_index"], b.extras["neighbour_index"]
    )
    assert quick.metrics["rmse"] == full.metrics["rmse"]


def test_read_interactions_codes_each_user_and_item_once(catalog):
    table = read_interactions()

    assert len(table) == 30 * 12
    for ids, codes in [
        (table.user_ids, table.user_codes),
        (table.item_ids, table.item_codes),
    ]:
        pairs = set(zip(ids.tolist(), codes.tolist(), strict=True))
        assert len(pairs) == len(set(ids.tolist())) == len(set(codes.tolist()))


def test_a_user_deleted_while_reading_has_no_code(catalog):
    _, users = catalog
    pks = [users[2].pk, users[0].pk, max(user.pk for user in users) + 1]

    codes, external_ids = catalog_codes(EndUser, pks)

    assert codes[2] == -1
    assert external_ids[codes[:2]].tolist() == ["u3", "u1"]


def test_every_version_records_its_ranking_metrics(catalog):
    train_explicit()
    train("--feedback", "implicit")
    train("--algorithm", "ease")

    for version in ModelVersion.objects.all():
        assert 0 <= version.metrics["ndcg@10"] <= 1
        assert 0 <= version.metrics["precision@10"] <= 1
    assert list(
        ModelVersion.objects.order_by("pk").values_list("algorithm", "feedback")
    ) == [("svd", "explicit"), ("svd", "implicit"), ("ease", "implicit")]


def test_an_ease_artifact_holds_the_item_to_item_weights(catalog):
    train("--algorithm", "ease", "--ease-reg", "50")

    version = ModelVersion.objects.get()
    artifact = load_artifact(version.artifact_path)
    n = len(artifact.item_ids)
    assert artifact.item_factors.shape == (n, n)
    assert np.allclose(np.diag(artifact.item_factors), 0)
    assert version.params["ease_reg"] == 50


def test_tune_prints_the_grid_and_saves_the_best_as_defaults(catalog, model_dir):
    out = io.StringIO()
    call_command(
        "tune",
        "--feedback",
        "explicit",
        "--factors",
        "4",
        "8",
        "--epochs",
        "5",
        "--lr",
        "0.01",
        "--reg",
        "0.05",
        "--metric",
        "rmse",
        "--save",
        "--json",
        stdout=out,
        stderr=io.StringIO(),
    )
    report = json.loads(out.getvalue().splitlines()[0])

    rmses = [row["rmse"] for row in report["rows"]]
    assert len(rmses) == 2
    assert report["best"]["rmse"] == min(rmses)
    saved = json.loads((model_dir / "train-defaults.json").read_text())
    assert saved["explicit"]["factors"] == report["best"]["factors"]

    call_command("train", "--feedback", "explicit", stdout=io.StringIO())
    version = ModelVersion.objects.get()
    assert version.params["factors"] == report["best"]["factors"]
    assert version.params["epochs"] == 5


def test_tune_refuses_rmse_for_implicit_feedback(catalog):
    with pytest.raises(CommandError, match="explicit"):
        call_command("tune", "--metric", "rmse", stdout=io.StringIO())
