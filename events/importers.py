"""Reading MovieLens data sets in the layouts GroupLens and RecBole publish.

Nothing here touches the database: `load` turns a folder into plain
records, or raises ImportFailed naming the file and line that is wrong.
"""

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

GROUPLENS_100K = "GroupLens ml-100k"
GROUPLENS_CSV = "GroupLens CSV"
RECBOLE = "RecBole atomic files"

EXPECTED_FILES = (
    "u.data and u.item (GroupLens ml-100k), "
    "ratings.csv and movies.csv (GroupLens ml-latest, ml-25m, ml-32m), "
    "or NAME.inter and NAME.item (RecBole)"
)

# The order of the genre flags in u.item, used when u.genre is absent.
DEFAULT_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

MIN_RATING = 0.5
MAX_RATING = 5.0
# 9999-12-31T23:59:59Z, the last second a datetime can hold.
MAX_TIMESTAMP = 253_402_300_799
# Short enough that "ml:<user>:<item>" fits Interaction.event_id (64).
MAX_ID_LENGTH = 30
# Item.title and Item.genres are both 255 characters wide.
MAX_TEXT_LENGTH = 255

TITLE_WITH_YEAR = re.compile(r"(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*")
YEAR = re.compile(r"\d{4}")
NO_GENRES = "(no genres listed)"


class ImportFailed(Exception):
    """The data set cannot be imported; the message says where and why."""


class _BadRow(Exception):
    """One row is wrong; the reader adds the file and line to the message."""


@dataclass(frozen=True, slots=True)
class Movie:
    external_id: str
    title: str
    genres: list[str]
    year: int | None


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    timestamp: int


@dataclass
class MovieLensData:
    layout: str
    items: list[Movie]
    ratings: list[Rating]
    users: set[str]


def load(folder):
    """Read the data set in folder, in whichever layout it is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportFailed(f"{folder}: no such folder")

    read = _reader_for(folder)
    logger.debug("Reading MovieLens data from %s with %s", folder, read.__name__)
    return read(folder)


def _reader_for(folder):
    if _has_any(folder, "u.data", "u.item"):
        return _read_grouplens_100k
    if _has_any(folder, "ratings.csv", "movies.csv"):
        return _read_grouplens_csv
    if any(folder.glob("*.inter")):
        return _read_recbole

    raise ImportFailed(f"{folder}: no MovieLens data found; expected {EXPECTED_FILES}")


def _has_any(folder, *names):
    return any((folder / name).exists() for name in names)


# GroupLens ml-100k: u.data, u.item, u.genre, u.user.


def _read_grouplens_100k(folder):
    genres = _read_u_genre(folder / "u.genre")

    path = folder / "u.item"
    items = _parse(path, _split_lines(path, "|", "latin-1"), _UItem(genres))

    path = folder / "u.data"
    rules = _RatingRules(items)
    rows = _split_lines(path, "\t", "latin-1")
    ratings = _parse(path, rows, lambda row: rules(*_width(row, 4)))

    users = {r.user_id for r in ratings}
    path = folder / "u.user"
    if path.exists():
        users.update(_parse(path, _split_lines(path, "|", "latin-1"), _u_user))
    return MovieLensData(GROUPLENS_100K, items, ratings, users)


def _read_u_genre(path):
    if not path.exists():
        return DEFAULT_GENRES
    named = _parse(path, _split_lines(path, "|", "latin-1"), _genre_and_index)

    # The file gives each genre its flag position; rows need not be sorted.
    by_index = {index: name for name, index in named}
    if sorted(by_index) != list(range(len(named))):
        raise ImportFailed(f"{path}: flag positions must run 0, 1, 2, ... once each")
    return tuple(by_index[i] for i in range(len(named)))


def _genre_and_index(row):
    name, index = _width(row, 2)
    if not index.isdigit():
        raise _BadRow(f"flag position {index!r} is not a whole number")
    return name, int(index)


class _UItem:
    """Parses u.item rows: id, title (year), dates, URL, then genre flags."""

    def __init__(self, genres):
        self.genres = genres
        self.seen = _UniqueIds("item")

    def __call__(self, row):
        row = _width(row, 5 + len(self.genres))
        flags = row[5:]
        if not set(flags) <= {"0", "1"}:
            raise _BadRow("genre flags must be 0 or 1")

        title, year = split_title_year(row[1])
        genres = [g for g, flag in zip(self.genres, flags, strict=True) if flag == "1"]
        return _movie(self.seen(row[0]), title, genres, year)


def _u_user(row):
    return _id(_width(row, 5)[0], "user id")


# GroupLens CSV: ratings.csv, movies.csv (ml-latest-small, ml-25m, ml-32m).


def _read_grouplens_csv(folder):
    path = folder / "movies.csv"
    header, rows = _csv_table(path)
    pick = _Columns(path, header, "movieId", "title", "genres")
    seen = _UniqueIds("item")
    items = _parse(path, rows, lambda row: _csv_movie(seen, *pick(row)))

    path = folder / "ratings.csv"
    header, rows = _csv_table(path)
    pick = _Columns(path, header, "userId", "movieId", "rating", "timestamp")
    rules = _RatingRules(items)
    ratings = _parse(path, rows, lambda row: rules(*pick(row)))

    users = {r.user_id for r in ratings}
    return MovieLensData(GROUPLENS_CSV, items, ratings, users)


def _csv_movie(seen, external_id, title_with_year, genres):
    title, year = split_title_year(title_with_year)
    genres = [] if genres == NO_GENRES else [g for g in genres.split("|") if g]
    return _movie(seen(external_id), title, genres, year)


# RecBole atomic files: NAME.inter, NAME.item, NAME.user with typed headers.


def _read_recbole(folder):
    inter = _single_inter_file(folder)

    path = inter.with_suffix(".item")
    header, rows = _tsv_table(path)
    pick = _Columns(path, header, "item_id", "movie_title")
    pick_more = _Columns(path, header, optional=("release_year", "class"))
    seen = _UniqueIds("item")
    items = _parse(
        path, rows, lambda row: _recbole_movie(seen, *pick(row), *pick_more(row))
    )

    header, rows = _tsv_table(inter)
    pick = _Columns(inter, header, "user_id", "item_id", "rating", "timestamp")
    rules = _RatingRules(items)
    ratings = _parse(inter, rows, lambda row: rules(*pick(row)))

    users = {r.user_id for r in ratings}
    path = inter.with_suffix(".user")
    if path.exists():
        users.update(_read_recbole_users(path))
    return MovieLensData(RECBOLE, items, ratings, users)


def _single_inter_file(folder):
    found = sorted(folder.glob("*.inter"))
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise ImportFailed(f"{folder}: more than one .inter file ({names}); keep one")
    return found[0]


def _recbole_movie(seen, external_id, title, year, genres):
    # RecBole writes "unkonwn" where the year is not known.
    year = int(year) if year and YEAR.fullmatch(year) else None
    return _movie(seen(external_id), title, (genres or "").split(), year)


def _read_recbole_users(path):
    header, rows = _tsv_table(path)
    pick = _Columns(path, header, "user_id")
    return _parse(path, rows, lambda row: _id(*pick(row), "user id"))


def _tsv_table(path):
    rows = _split_lines(path, "\t")
    _, header = next(rows, (None, None))
    if header is None:
        raise ImportFailed(f"{path}: file is empty; expected a header line")

    # RecBole names its columns name:type; only the name matters here.
    return [field.split(":")[0] for field in header], rows


def _csv_table(path):
    rows = _csv_lines(path)
    _, header = next(rows, (None, None))
    if header is None:
        raise ImportFailed(f"{path}: file is empty; expected a header line")
    return header, rows


class _Columns:
    """Picks columns by their header name, whatever order a file has them in.

    Required columns must be in the header; an optional one that is not
    is picked as None.
    """

    def __init__(self, path, header, *required, optional=()):
        missing = [name for name in required if name not in header]
        if missing:
            raise ImportFailed(
                f"{path}, line 1: missing column {', '.join(missing)}; "
                f"the header has {', '.join(header)}"
            )

        self.width = len(header)
        wanted = required + optional
        self.indexes = [header.index(n) if n in header else None for n in wanted]

    def __call__(self, row):
        row = _width(row, self.width)
        return [None if i is None else row[i] for i in self.indexes]


# Shared by all layouts.


class _RatingRules:
    """Turns the four text fields of a rating into a checked Rating."""

    def __init__(self, items):
        self.known_items = {item.external_id for item in items}
        self.seen = set()

    def __call__(self, user_id, item_id, rating, timestamp):
        user_id = _id(user_id, "user id")
        item_id = _id(item_id, "item id")
        if item_id not in self.known_items:
            raise _BadRow(f"item {item_id} is not in the item file")

        # A pair rated twice would collide on its event id and lose one.
        if (user_id, item_id) in self.seen:
            raise _BadRow(f"user {user_id} rates item {item_id} a second time")
        self.seen.add((user_id, item_id))

        return Rating(user_id, item_id, _rating(rating), _timestamp(timestamp))


class _UniqueIds:
    def __init__(self, what):
        self.what = what
        self.seen = set()

    def __call__(self, text):
        external_id = _id(text, f"{self.what} id")
        if external_id in self.seen:
            raise _BadRow(f"{self.what} {external_id} is listed a second time")

        self.seen.add(external_id)
        return external_id


def split_title_year(text):
    """Split "Heat (1995)" into ("Heat", 1995); a title without a year gets None."""
    text = text.strip()
    match = TITLE_WITH_YEAR.fullmatch(text)
    if not match:
        return text, None
    return match["title"], int(match["year"])


def _movie(external_id, title, genres, year):
    title = title.strip()
    if not title:
        raise _BadRow("the title is empty")
    if len(title) > MAX_TEXT_LENGTH:
        raise _BadRow(f"the title is longer than {MAX_TEXT_LENGTH} characters")
    if len("|".join(genres)) > MAX_TEXT_LENGTH:
        raise _BadRow(f"the genres are longer than {MAX_TEXT_LENGTH} characters")
    return Movie(external_id, title, genres, year)


def _id(text, what):
    text = text.strip()
    if not text:
        raise _BadRow(f"the {what} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise _BadRow(f"the {what} is longer than {MAX_ID_LENGTH} characters")
    return text


def _rating(text):
    try:
        value = float(text)
    except ValueError:
        raise _BadRow(f"rating {text!r} is not a number") from None

    # Written so that NaN fails it too.
    if not MIN_RATING <= value <= MAX_RATING:
        raise _BadRow(f"rating {text!r} is outside {MIN_RATING:g}..{MAX_RATING:g}")
    return value


def _timestamp(text):
    # RecBole types timestamps as float, so "881250949.0" is fine too.
    try:
        value = float(text)
    except ValueError:
        raise _BadRow(f"timestamp {text!r} is not a number") from None

    if not value.is_integer() or not 0 <= value <= MAX_TIMESTAMP:
        raise _BadRow(f"timestamp {text!r} is not a whole number of seconds since 1970")
    return int(value)


def _width(row, width):
    if len(row) != width:
        raise _BadRow(f"expected {width} columns, found {len(row)}")
    return row


def _parse(path, rows, parse_row):
    """Parse each (line number, fields) row, blaming a failure on its line."""
    parsed = []
    for number, fields in rows:
        try:
            parsed.append(parse_row(fields))
        except _BadRow as exc:
            raise ImportFailed(f"{path}, line {number}: {exc}") from None
    return parsed


def _split_lines(path, separator, encoding="utf-8"):
    for number, line in enumerate(_decoded_lines(path, encoding), start=1):
        line = line.rstrip("\r\n")
        if line.strip():
            yield number, line.split(separator)


def _csv_lines(path):
    reader = csv.reader(_decoded_lines(path, "utf-8"))
    try:
        for row in reader:
            # line_num counts physical lines, so a quoted newline is allowed for.
            if row:
                yield reader.line_num, row
    except csv.Error as exc:
        raise ImportFailed(f"{path}, line {reader.line_num}: {exc}") from None


def _decoded_lines(path, encoding):
    """Yield the lines of path one by one, so a bad byte is blamed on its line."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ImportFailed(f"{path}: file is missing") from None

    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError:
                raise ImportFailed(
                    f"{path}, line {number}: not {encoding} text"
                ) from None

            # Editors on Windows start a UTF-8 file with a byte order mark.
            yield line.removeprefix("\ufeff") if number == 1 else line
