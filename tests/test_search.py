"""Finding customers: words of a name in any case and with accents folded, emails, Stripe ids, order numbers,
and text that must neither crash nor match everyone."""

from __future__ import annotations

import pytest

from bot.search import MAX_COUNTED, MAX_RESULTS, customer_terms, find_customers, fold, index_customer
from tests import factories as make
from tests.slack_text import text_of


@pytest.fixture
def people(db):
    with db.session() as s:
        rows = {
            "jane": make.customer(s, "Jane Doe", "jane.doe@example.com", stripe_customer_id="cus_Jane0001"),
            "janet": make.customer(s, "Janet Smith-Okafor", "janet@acme.io"),
            "zoe": make.customer(s, "Zoë Łukasz", "zoe.l@example.org"),
            "obrien": make.customer(s, "Siobhan O'Brien", "siobhan+shop@example.com"),
            "francois": make.customer(s, "François Müller", "fm@example.de"),
        }
        order = make.order(s, rows["zoe"], 1000)
        ids = {key: row.id for key, row in rows.items()}
        ids["zoe_order"] = order.number
    return ids


def names(db, text: str) -> list[str]:
    with db.session() as s:
        return [m.name for m in find_customers(s, text).matches]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("jane", ["Jane Doe", "Janet Smith-Okafor"]),
        ("JANE", ["Jane Doe", "Janet Smith-Okafor"]),
        ("doe", ["Jane Doe"]),
        ("okafor", ["Janet Smith-Okafor"]),
        ("smith-okafor", ["Janet Smith-Okafor"]),
        ("smith–okafor", ["Janet Smith-Okafor"]),
        ("smith-ok", ["Janet Smith-Okafor"]),
        ("zoe", ["Zoë Łukasz"]),
        ("Zoë", ["Zoë Łukasz"]),
        ("lukasz", ["Zoë Łukasz"]),
        ("francois muller", ["François Müller"]),
        ("obrien", ["Siobhan O'Brien"]),
        ("o'brien", ["Siobhan O'Brien"]),
        ("brien", ["Siobhan O'Brien"]),
        ("jane doe", ["Jane Doe"]),
        ("doe jane", ["Jane Doe"]),
        ("jane smith", ["Janet Smith-Okafor"]),
    ],
)
def test_any_word_of_a_name_by_prefix_any_case_accents_folded(db, people, query, expected):
    assert names(db, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("jane.doe@example.com", ["Jane Doe"]),
        ("JANE.DOE@EXAMPLE.COM", ["Jane Doe"]),
        ("jane.doe@", ["Jane Doe"]),
        ("janet@acme.io", ["Janet Smith-Okafor"]),
        ("acme.io", ["Janet Smith-Okafor"]),
        ("@acme", ["Janet Smith-Okafor"]),
        ("siobhan+shop", ["Siobhan O'Brien"]),
        ("example.de", ["François Müller"]),
    ],
)
def test_email_whole_or_part(db, people, query, expected):
    assert names(db, query) == expected


def test_stripe_customer_id_and_order_number(db, people):
    assert names(db, "cus_Jane0001") == ["Jane Doe"]
    assert names(db, "cus_Nobody") == []
    assert names(db, people["zoe_order"]) == ["Zoë Łukasz"]
    assert names(db, "#" + people["zoe_order"]) == ["Zoë Łukasz"]


@pytest.mark.parametrize(
    "query",
    [
        "%",
        "_",
        "%%",
        "j%",
        "j_ne",
        "'",
        "' OR 1=1 --",
        "\\",
        "*",
        "😀",
        "jane😀",
        "x" * 4000,
        "a " * 2000,
        "\u0000",
        "\ud800",
    ],
)
def test_odd_text_neither_crashes_nor_matches_everyone(db, people, query):
    found = names(db, query)
    assert len(found) < len(people) - 1


def test_emoji_and_long_text_are_treated_as_plain_words(db):
    with db.session() as s:
        make.customer(s, "Ana 🌻 Flores")
    assert names(db, "🌻") == ["Ana 🌻 Flores"]
    assert names(db, "ana " + "y" * 4000) == []


def test_a_common_prefix_lists_ten_and_counts_the_rest(db):
    with db.session() as s:
        for i in range(25):
            make.customer(s, f"Sam Person{i:02d}")
    with db.session() as s:
        result = find_customers(s, "sam")
    assert len(result.matches) == MAX_RESULTS
    assert result.total == 25
    assert not result.capped


def test_past_a_hundred_the_list_says_more_than_100_instead_of_counting(harness):
    with harness.db.session() as s:
        for i in range(MAX_COUNTED + 5):
            make.customer(s, f"Sam Person{i:03d}", f"sam{i:03d}@example.com")
    listing = text_of(harness.person.command("sam"))
    assert "More than 100" in listing
    assert "Sam Person000" in listing


def test_customers_matching_through_several_words_are_counted_once(db):
    """Sam Samson, sam.samson@… has four terms starting with "sam": still one customer in the count."""
    with db.session() as s:
        for i in range(60):
            make.customer(s, f"Sam Samson{i:02d}", f"sam.samson{i:02d}@samco.com")
    with db.session() as s:
        result = find_customers(s, "sam")
    assert (len(result.matches), result.total, result.capped) == (MAX_RESULTS, 60, False)


def test_renaming_a_customer_updates_what_finds_them(db):
    with db.session() as s:
        row = make.customer(s, "Jane Doe")
    with db.session() as s:
        row = s.merge(row)
        row.name, row.email = "Jane Okonkwo", "jane@okonkwo.ng"
        index_customer(s, row)
    assert names(db, "doe") == []
    assert names(db, "okonkwo") == ["Jane Okonkwo"]


def test_folding_and_terms():
    assert fold("ZOË Łukasz Søren Straße") == "zoe lukasz soren strasse"
    terms = customer_terms("Mary-Jane O'Neil", "mj.oneil+news@Example.COM")
    assert {"mary-jane", "mary", "jane", "o'neil", "oneil", "neil"} <= terms
    assert {
        "mj.oneil+news@example.com",
        "mj.oneil+news",
        "mj",
        "news",
        "example.com",
        "@example.com",
    } <= terms
