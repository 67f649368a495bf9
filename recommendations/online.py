"""Online evaluation: what was shown, and what users did with it.

An impression is an item in a shown list; a click or a conversion counts
when its event carries the `recommendation_id` of the list it came from.
"""

from django.db.models import Count, OuterRef, Subquery, Sum

from events.models import Interaction
from recommendations.engine.abtest import compare_rates, wilson_interval
from recommendations.models import ShownList

CLICKS = ("click",)
CONVERSIONS = ("add_to_cart", "purchase")


def _attributed(kinds, group_field, **filters):
    """Counts of attributed events of these kinds, by a ShownList field."""
    shown = ShownList.objects.filter(pk=OuterRef("recommendation_id"), **filters)
    rows = (
        Interaction.objects.filter(kind__in=kinds, recommendation_id__isnull=False)
        .annotate(group=Subquery(shown.values(group_field)[:1]))
        .exclude(group=None)
        .order_by()
        .values("group")
        .annotate(n=Count("id"))
    )
    return {row["group"]: row["n"] for row in rows}


def _shown(group_field, **filters):
    rows = (
        ShownList.objects.filter(**filters)
        .order_by()
        .values(group_field)
        .annotate(impressions=Sum("n_items"), lists=Count("id"))
    )
    return {row[group_field]: row for row in rows}


def _rates(shown, clicks, conversions):
    impressions = shown["impressions"] or 0
    low, high = wilson_interval(clicks, impressions)
    return {
        "lists": shown["lists"],
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "ctr": clicks / impressions if impressions else 0.0,
        "ctr_low": low,
        "ctr_high": high,
        "conversion_rate": conversions / impressions if impressions else 0.0,
    }


def stats_by_version():
    """Impressions, CTR and conversions for each model version ("" = none)."""
    shown = _shown("model_version")
    clicks = _attributed(CLICKS, "model_version")
    conversions = _attributed(CONVERSIONS, "model_version")
    return {
        version: _rates(row, clicks.get(version, 0), conversions.get(version, 0))
        for version, row in shown.items()
    }


def experiment_report(experiment):
    """Each arm's figures, and whether treatment differs from control."""
    shown = _shown("arm", experiment=experiment)
    clicks = _attributed(CLICKS, "arm", experiment=experiment)
    conversions = _attributed(CONVERSIONS, "arm", experiment=experiment)
    empty = {"impressions": 0, "lists": 0}
    arms = {
        arm: _rates(shown.get(arm, empty), clicks.get(arm, 0), conversions.get(arm, 0))
        for arm in ("control", "treatment")
    }
    control, treatment = arms["control"], arms["treatment"]
    comparison = compare_rates(
        control["clicks"],
        control["impressions"],
        treatment["clicks"],
        treatment["impressions"],
    )
    return {
        "arms": arms,
        "difference": comparison.difference,
        "z": comparison.z,
        "p_value": comparison.p_value,
        "significant": comparison.significant,
    }
