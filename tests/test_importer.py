import shutil
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from events.importers import split_title_year
from events.models import EndUser, Interaction, Item

FIXTURES = Path(__file__).parent / "fixtures" / "movielens"
GROUPLENS_100K = FIXTURES / "grouplens_100k"
GROUPLENS_CSV = FIXTURES / "grouplens_csv"
RECBOLE = FIXTURES / "recbole"


def run_import(path=None):
    out = StringIO()
    args = [] if path is None else [str(path)]
    call_command("import_movielens", *args, stdout=out)
    return out.getvalue()


def counts():
    return (
        Item.objects.count(),
        EndUser.objects.count(),
        Interaction.objects.count(),
    )


def rating(user, item):
    return Interaction.objects.get(event_id=f"ml:{user}:{item}")


def copy_of(fixture, tmp_path):
    folder = tmp_path / fixture.name
    shutil.copytree(fixture, folder)
    return folder


def at(timestamp):
    return datetime.fromtimestamp(timestamp, UTC)


@pytest.mark.django_db
def test_it_imports_the_grouplens_100k_layout():
    output = run_import(GROUPLENS_100K)

    # u.user adds user 5, who rated nothing.
    assert counts() == (6, 5, 24)
    assert "Imported 6 items, 5 users, 24 ratings (24 new)" in output
    assert "GroupLens ml-100k" in output

    orbit = Item.objects.get(external_id="2")
    assert orbit.title == "Ninth Orbit, The"
    assert orbit.year == 1997
    assert orbit.genre_list == ["Action", "Sci-Fi", "Thriller"]

    first = rating("1", "1")
    assert first.kind == Interaction.Kind.RATE
    assert first.value == 5.0
    assert first.created_at == at(881250949)
    assert first.user.external_id == "1"
    assert first.item.external_id == "1"


@pytest.mark.django_db
def test_it_reads_u_item_as_latin_1():
    run_import(GROUPLENS_100K)

    cafe = Item.objects.get(external_id="3")
    assert cafe.title == "Café Marguerite"
    assert cafe.genres == "Comedy|Romance"


@pytest.mark.django_db
def test_it_leaves_the_year_empty_when_the_title_has_none():
    run_import(GROUPLENS_100K)

    untitled = Item.objects.get(external_id="6")
    assert untitled.title == "untitled reel"
    assert untitled.year is None
    assert untitled.genres == "unknown"


@pytest.mark.django_db
def test_it_reads_the_genre_order_from_u_genre(tmp_path):
    (tmp_path / "u.genre").write_text("Western|2\nDrama|0\nComedy|1\n")
    (tmp_path / "u.item").write_text("7|Dust Road (1950)||||1|0|1\n")
    (tmp_path / "u.data").write_text("1\t7\t4\t900000000\n")

    run_import(tmp_path)

    assert Item.objects.get().genres == "Drama|Western"


@pytest.mark.django_db
def test_it_imports_the_grouplens_csv_layout():
    output = run_import(GROUPLENS_CSV)

    assert counts() == (6, 5, 25)
    assert "from GroupLens CSV" in output

    keeper = Item.objects.get(external_id="2")
    assert keeper.title == "Lighthouse Keeper, The"
    assert keeper.year == 2003
    assert keeper.genre_list == ["Drama", "Mystery"]

    assert Item.objects.get(external_id="10").title == "Łódź Nocturne"
    assert rating("1", "2").value == 3.5
    assert rating("1", "32").value == 0.5
    assert rating("5", "100").created_at == at(1704067440)


@pytest.mark.django_db
def test_it_reads_no_genres_listed_as_no_genres():
    run_import(GROUPLENS_CSV)

    assert Item.objects.get(external_id="32").genres == ""


@pytest.mark.django_db
def test_it_keeps_parentheses_that_are_not_the_year():
    run_import(GROUPLENS_CSV)

    harbor = Item.objects.get(external_id="5")
    assert harbor.title == "Glass Harbor (a.k.a. Harbor of Glass)"
    assert harbor.year == 2008

    moths = Item.objects.get(external_id="100")
    assert (moths.title, moths.year) == ("Moth Parade", None)


@pytest.mark.django_db
def test_it_imports_the_recbole_layout_whatever_the_column_order():
    output = run_import(RECBOLE)

    # tiny.user adds u6, who rated nothing.
    assert counts() == (5, 6, 25)
    assert "from RecBole" in output

    engines = Item.objects.get(external_id="a1")
    assert engines.title == "Quiet Engines"
    assert engines.year == 1993
    assert engines.genre_list == ["Drama", "Sci-Fi"]

    assert rating("u2", "a4").value == 2.0
    assert rating("u2", "a4").created_at == at(978400400)
    assert rating("u5", "a1").created_at == at(978700000)


@pytest.mark.django_db
def test_it_reads_an_unknown_recbole_year_as_none():
    run_import(RECBOLE)

    assert Item.objects.get(external_id="a4").year is None
    assert Item.objects.get(external_id="a5").genres == ""


@pytest.mark.django_db
def test_it_imports_the_same_rows_when_run_twice():
    run_import(GROUPLENS_100K)
    first = counts()

    output = run_import(GROUPLENS_100K)

    assert counts() == first
    assert "24 ratings (0 new)" in output


@pytest.mark.django_db
def test_it_updates_a_changed_title_on_reimport(tmp_path):
    folder = copy_of(GROUPLENS_CSV, tmp_path)
    run_import(folder)

    movies = folder / "movies.csv"
    text = movies.read_text().replace("Static Garden (2015)", "Static Garden (2016)")
    movies.write_text(text)
    run_import(folder)

    garden = Item.objects.get(external_id="32")
    assert (garden.title, garden.year) == ("Static Garden", 2016)
    assert counts() == (6, 5, 25)


@pytest.mark.django_db
def test_it_reads_the_data_dir_setting_without_a_path(settings):
    settings.RTREC = {**settings.RTREC, "DATA_DIR": RECBOLE}

    run_import()

    assert counts() == (5, 6, 25)


@pytest.mark.django_db
def test_it_says_where_to_get_the_data_when_the_folder_is_missing(tmp_path):
    with pytest.raises(CommandError) as failure:
        run_import(tmp_path / "nowhere")

    message = str(failure.value)
    assert "nowhere" in message
    assert "https://grouplens.org/datasets/movielens/100k/" in message
    assert "RTREC_DATA" in message


@pytest.mark.django_db
@pytest.mark.slow
def test_it_imports_the_real_ml_100k():
    folder = settings.RTREC["DATA_DIR"]
    if not folder.is_dir():
        pytest.skip(f"no MovieLens data at {folder}")

    run_import(folder)

    assert counts() == (1682, 943, 100000)
    assert Item.objects.get(external_id="1").title == "Toy Story"


def remove_u_item(folder):
    (folder / "u.item").unlink()


def replace_line(name, number, text):
    def breaker(folder):
        path = folder / name
        lines = path.read_bytes().split(b"\n")
        lines[number - 1] = text.encode("latin-1")
        path.write_bytes(b"\n".join(lines))

    return breaker


def keep_only_readme(folder):
    for path in folder.iterdir():
        path.unlink()
    (folder / "README.txt").write_text("nothing to see")


BREAKAGES = {
    "missing u.item": (remove_u_item, ["u.item", "missing"]),
    "three columns": (
        replace_line("u.data", 3, "1\t3\t4"),
        ["u.data, line 3", "expected 4 columns, found 3"],
    ),
    "non-numeric rating": (
        replace_line("u.data", 5, "1\t5\tgood\t881251200"),
        ["u.data, line 5", "'good' is not a number"],
    ),
    "rating out of range": (
        replace_line("u.data", 2, "1\t2\t6\t881250960"),
        ["u.data, line 2", "outside 0.5..5"],
    ),
    "bad timestamp": (
        replace_line("u.data", 4, "1\t4\t2\tyesterday"),
        ["u.data, line 4", "timestamp 'yesterday'"],
    ),
    "unknown item": (
        replace_line("u.data", 7, "2\t99\t4\t882000000"),
        ["u.data, line 7", "item 99 is not in the item file"],
    ),
    "same pair twice": (
        replace_line("u.data", 7, "1\t1\t4\t882000000"),
        ["u.data, line 7", "user 1 rates item 1 a second time"],
    ),
    "bad genre flag": (
        replace_line("u.item", 4, "4|Foxes (1995)|||" + "|2" * 19),
        ["u.item, line 4", "genre flags"],
    ),
    "unknown layout": (
        keep_only_readme,
        ["no MovieLens data", "u.data", "ratings.csv", ".inter"],
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_it_names_file_and_line_of_what_is_wrong(tmp_path, breakage):
    break_folder, expected = breakage
    folder = copy_of(GROUPLENS_100K, tmp_path)
    break_folder(folder)

    with pytest.raises(CommandError) as failure:
        run_import(folder)

    for text in expected:
        assert text in str(failure.value)
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_it_names_file_and_line_of_a_bad_csv_rating(tmp_path):
    folder = copy_of(GROUPLENS_CSV, tmp_path)
    ratings = folder / "ratings.csv"
    ratings.write_text(ratings.read_text().replace("1,5,5.0,", "1,5,lots,"))

    with pytest.raises(CommandError, match=r"ratings\.csv, line 4: rating 'lots'"):
        run_import(folder)


@pytest.mark.django_db
def test_it_names_the_missing_recbole_column(tmp_path):
    folder = copy_of(RECBOLE, tmp_path)
    inter = folder / "tiny.inter"
    inter.write_text(inter.read_text().replace("rating:float", "score:float"))

    with pytest.raises(CommandError, match=r"tiny\.inter, line 1: missing column"):
        run_import(folder)


@pytest.mark.django_db
def test_it_leaves_an_earlier_import_alone_when_a_later_one_is_broken(tmp_path):
    run_import(RECBOLE)
    before = counts()
    folder = copy_of(GROUPLENS_100K, tmp_path)
    replace_line("u.data", 20, "4\t3\tfour\t884000020")(folder)

    with pytest.raises(CommandError, match="line 20"):
        run_import(folder)

    assert counts() == before


@pytest.mark.django_db
def test_it_writes_nothing_when_storing_fails_halfway(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Interaction.objects, "bulk_create", fail)

    with pytest.raises(RuntimeError):
        run_import(GROUPLENS_100K)

    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Heat (1995)", ("Heat", 1995)),
        ("Usual Suspects, The (1995) ", ("Usual Suspects, The", 1995)),
        ("Babylon Nights (2006-2007)", ("Babylon Nights (2006-2007)", None)),
        ("unknown", ("unknown", None)),
    ],
)
def test_it_splits_the_year_off_a_title(text, expected):
    assert split_title_year(text) == expected
