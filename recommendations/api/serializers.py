"""Request and response shapes: they parse query strings and catalog
writes, and describe every body in the OpenAPI schema. Events are
checked by the shared validator in events.validation, not here."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from events.models import Interaction, Item
from events.validation import MAX_EXCLUDE, MAX_ID_LENGTH
from recommendations.models import ModelVersion
from recommendations.online import stats_by_version

GENRE_SEPARATOR = "|"


class ExternalIdField(serializers.CharField):
    """A catalog's own id: what the URLs use, so no slash."""

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_ID_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if "/" in value:
            raise serializers.ValidationError("An id may not contain '/'.")
        return value


class GenreListField(serializers.ListField):
    """Genres as a list of names; stored pipe-joined on the item."""

    child = serializers.CharField(max_length=64)

    def to_representation(self, data):
        return [genre for genre in data.split(GENRE_SEPARATOR) if genre]

    def to_internal_value(self, data):
        genres = super().to_internal_value(data)
        if any(GENRE_SEPARATOR in genre for genre in genres):
            raise serializers.ValidationError(
                f"A genre may not contain {GENRE_SEPARATOR!r}."
            )
        joined = GENRE_SEPARATOR.join(dict.fromkeys(genres))
        if len(joined) > Item._meta.get_field("genres").max_length:
            raise serializers.ValidationError("Too many genres for one item.")
        return joined


class ItemSerializer(serializers.ModelSerializer):
    id = ExternalIdField(
        source="external_id",
        validators=[
            UniqueValidator(Item.objects.all(), "An item with this id already exists.")
        ],
    )
    genres = GenreListField(required=False)
    active = serializers.BooleanField(source="is_active", required=False)

    class Meta:
        model = Item
        fields = [
            "id",
            "title",
            "genres",
            "year",
            "description",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class ItemUpdateSerializer(ItemSerializer):
    """An item's fields for PUT and PATCH: the URL names the item, so a
    body may repeat its id but not change it."""

    id = ExternalIdField(source="external_id", required=False)

    def validate_id(self, value):
        if value != self.instance.external_id:
            raise serializers.ValidationError("An item's id cannot change.")
        return value


class ItemFilterSerializer(serializers.Serializer):
    search = serializers.CharField(
        required=False, max_length=255, help_text="part of the title, any case"
    )
    genre = serializers.CharField(required=False, max_length=64)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


def _at_most(value, limit):
    if value > limit:
        raise serializers.ValidationError(
            f"Ensure this value is less than or equal to {limit}."
        )
    return value


class CountQuerySerializer(serializers.Serializer):
    n = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="how many items (default 10, at most 100)",
    )

    def validate_n(self, value):
        return _at_most(value, settings.RTREC["MAX_N"])

    @property
    def count(self):
        return self.validated_data.get("n", settings.RTREC["DEFAULT_N"])


class RecommendationQuerySerializer(CountQuerySerializer):
    user = serializers.CharField(
        required=False,
        max_length=MAX_ID_LENGTH,
        help_text="the end user's id; required with an API key or staff account",
    )
    genre = serializers.CharField(required=False, max_length=MAX_ID_LENGTH)
    exclude = serializers.ListField(
        child=serializers.CharField(
            max_length=MAX_ID_LENGTH * MAX_EXCLUDE, allow_blank=True
        ),
        required=False,
        default=list,
        help_text="item ids to leave out: repeat the parameter or join with commas",
    )

    def validate_exclude(self, value):
        ids = [part for chunk in value for part in chunk.split(",") if part]
        if len(ids) > MAX_EXCLUDE:
            raise serializers.ValidationError(
                f"Ensure this field has no more than {MAX_EXCLUDE} ids."
            )
        if any(len(item_id) > MAX_ID_LENGTH for item_id in ids):
            raise serializers.ValidationError(
                f"An id has at most {MAX_ID_LENGTH} characters."
            )
        return ids


class ScoredItemSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    score = serializers.FloatField()


STRATEGIES = ["personal", "foldin", "trending", "popular", "content"]


class RecommendationsSerializer(serializers.Serializer):
    type = serializers.ChoiceField(["recommendations"])
    recommendation_id = serializers.UUIDField()
    model = serializers.CharField(allow_null=True)
    strategy = serializers.ChoiceField(STRATEGIES)
    items = ScoredItemSerializer(many=True)


class SimilarSerializer(serializers.Serializer):
    type = serializers.ChoiceField(["similar"])
    item = serializers.CharField()
    model = serializers.CharField(allow_null=True)
    strategy = serializers.ChoiceField(STRATEGIES)
    items = ScoredItemSerializer(many=True)


class EventSerializer(serializers.Serializer):
    """One event, as the WebSocket's plus the end user it is for."""

    user = serializers.CharField(
        max_length=MAX_ID_LENGTH,
        required=False,
        help_text="the end user's id; required with an API key or staff account",
    )
    event = serializers.ChoiceField(Interaction.Kind.values)
    item = serializers.CharField(max_length=MAX_ID_LENGTH)
    value = serializers.FloatField(
        required=False,
        help_text="the rating, required for 'rate' and ignored otherwise",
    )
    event_id = serializers.CharField(
        required=False,
        max_length=MAX_ID_LENGTH,
        help_text="the client's id for the event; a repeat is stored once",
    )
    recommendation_id = serializers.CharField(required=False, max_length=MAX_ID_LENGTH)


class AckSerializer(serializers.Serializer):
    type = serializers.ChoiceField(["ack"])
    event_id = serializers.CharField()
    duplicate = serializers.BooleanField()


class OnlineStatsSerializer(serializers.Serializer):
    lists = serializers.IntegerField()
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    conversions = serializers.IntegerField()
    ctr = serializers.FloatField()
    ctr_low = serializers.FloatField(help_text="95% Wilson interval")
    ctr_high = serializers.FloatField()
    conversion_rate = serializers.FloatField()


class ModelVersionSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)
    online = serializers.SerializerMethodField(
        help_text="what users were shown from this version and clicked; "
        "null until a list from it was shown"
    )

    @extend_schema_field(OnlineStatsSerializer(allow_null=True))
    def get_online(self, version):
        # One query set for the whole page, not one per version.
        if "online" not in self.context:
            self.context["online"] = stats_by_version()
        return self.context["online"].get(version.version)

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "algorithm",
            "feedback",
            "params",
            "metrics",
            "n_users",
            "n_items",
            "n_interactions",
            "training_seconds",
            "active",
            "online",
            "created_at",
            "activated_at",
        ]
        read_only_fields = fields


class WsTokenRequestSerializer(serializers.Serializer):
    user = serializers.CharField(
        required=False,
        max_length=MAX_ID_LENGTH,
        help_text="the end user's id; required with an API key or staff account",
    )
    ttl = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="seconds the token stays valid; default and most: RTREC_WS_TOKEN_TTL",
    )

    def validate_ttl(self, value):
        return _at_most(value, settings.RTREC["WS_TOKEN_TTL"])

    @property
    def ttl_seconds(self):
        return self.validated_data.get("ttl", settings.RTREC["WS_TOKEN_TTL"])


class WsTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    user = serializers.CharField()
    expires_in = serializers.IntegerField()


class HealthSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    model = serializers.CharField(allow_null=True)
    model_error = serializers.CharField(allow_null=True)
    channel_layer = serializers.CharField()
    database = serializers.CharField()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        required=False, help_text="the reasons, per field of the request"
    )
    rows = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="for events: what is wrong with each bad row, by index",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
