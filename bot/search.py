"""Finding customers by part of a name, an email, a Stripe customer id or an order number.

Every word of a customer's name and email is stored folded (lower case, accents removed) in
`customer_search_terms`; a query word matches a customer when it is a prefix of one of their terms. A prefix
search is then a range scan on the primary key, the same on SQLite and PostgreSQL, fast at millions of rows,
and with no LIKE pattern that `%` or `_` in the query could widen.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy import Connection, and_, bindparam, exists, func, intersect, select
from sqlalchemy.orm import Session, aliased

from bot.models import Customer, CustomerSearchTerm, Order
from bot.naming import shown_name
from bot.viewmodels import Match, SearchResult

MAX_RESULTS = 10
MAX_COUNTED = 100  # beyond this the list says "More than 100": counting further costs more than it tells
MAX_QUERY_WORDS = 6
PROBE_LIMIT = 5000  # below this many customers for a word, checking each one beats intersecting ranges
MAX_TERM_LENGTH = 200

_STRIPE_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")
_ORDER_NUMBER = re.compile(r"^#?(\d{1,20})$")
_WORD_SEPARATORS = re.compile(r"[\s,;:/()\[\]{}\"“”]+")
_HYPHENS = str.maketrans(dict.fromkeys("‐‑‒–—", "-"))
_EMAIL_SEPARATORS = re.compile(r"[.+_\-]+")


def fold(text: str) -> str:
    """Lower case with accents removed: 'Zoë Łukasz' -> 'zoe lukasz'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.translate(_UNDECOMPOSABLE)


# Letters that Unicode does not decompose into a base letter plus an accent.
_UNDECOMPOSABLE = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "œ": "oe", "æ": "ae"})


def name_terms(name: str) -> set[str]:
    terms: set[str] = set()
    for chunk in _WORD_SEPARATORS.split(fold(name).translate(_HYPHENS)):
        # Smith-Okafor is found whole and by each part; people type a hyphenated surname whole.
        hyphenated = chunk.strip("-")
        words = [hyphenated, *hyphenated.split("-")] if "-" in hyphenated else [hyphenated]
        for word in words:
            word = word.strip(".'’`")
            if not word:
                continue
            terms.add(word)
            if "'" in word or "’" in word or "." in word:
                # O'Brien is found as "obrien", "o'brien" and "brien"; J.R. as "jr".
                parts = [p for p in re.split(r"['’.]", word) if p]
                terms.add("".join(parts))
                terms.update(parts)
    return terms


def email_terms(email: str) -> set[str]:
    email = fold(email.strip())
    if not email:
        return set()
    terms = {email}
    local, _, domain = email.partition("@")
    if local:
        terms.add(local)
        terms.update(p for p in _EMAIL_SEPARATORS.split(local) if p)
    if domain:
        terms.add(domain)
        terms.add("@" + domain)
    return terms


def customer_terms(name: str, email: str) -> set[str]:
    """The search terms stored for a customer with this name and email."""
    return {t[:MAX_TERM_LENGTH] for t in name_terms(name) | email_terms(email) if t}


def index_customer(session: Session, customer: Customer) -> None:
    """Store the search terms of a new customer, or refresh them after a name or email change."""
    session.flush()
    session.query(CustomerSearchTerm).filter_by(customer_id=customer.id).delete()
    session.add_all(
        CustomerSearchTerm(term=term, customer_id=customer.id)
        for term in customer_terms(customer.name, customer.email)
    )


def order_number(text: str) -> str | None:
    """The order number `text` is, written `100234` or `#100234`; None when it is not one."""
    number = _ORDER_NUMBER.match(text.strip())
    return number.group(1) if number else None


def query_words(text: str) -> list[str]:
    """The words to look up: split like names are (an email or a hyphenated name stays whole), at most a few,
    each cut short."""
    words: list[str] = []
    for chunk in fold(text).split():
        chunk = chunk if "@" in chunk else chunk.translate(_HYPHENS).strip("-")
        words.extend([chunk] if "@" in chunk else (w for w in _WORD_SEPARATORS.split(chunk) if w))
    return [w[:MAX_TERM_LENGTH] for w in words[:MAX_QUERY_WORDS]]


Reader = Connection | Session

# The statements of a search, built once with bound parameters (see bot.records): a one-word search, the most
# common, is one statement, plus one bounded count when the word matches more than a page.
_terms = CustomerSearchTerm.__table__
_customers = Customer.__table__
_WINDOW = MAX_RESULTS * 4  # a customer can match one word through several of their terms
_low, _high = bindparam("low"), bindparam("high")


def _in_range(term, *, bounded: bool):
    return and_(term >= _low, term < _high) if bounded else term >= _low


def _first_page(bounded: bool):
    """The word's range in term order with each customer's name and email: a few index entries, however common."""
    return (
        select(_terms.c.customer_id, _customers.c.name, _customers.c.email)
        .join(_customers, _customers.c.id == _terms.c.customer_id)
        .where(_in_range(_terms.c.term, bounded=bounded))
        .order_by(_terms.c.term, _terms.c.customer_id)
        .limit(_WINDOW)
    )


def _bounded_count(bounded: bool):
    """How many customers have a term in the range, counting no further than MAX_COUNTED + 1: each customer is
    counted at their first term in the range (one seek in the customer-term index tells), so the count stops
    early however common the word is, without a DISTINCT over the whole range."""
    earlier = _terms.alias("earlier")
    firsts = (
        select(_terms.c.customer_id)
        .where(
            _in_range(_terms.c.term, bounded=bounded),
            ~exists().where(
                earlier.c.customer_id == _terms.c.customer_id,
                earlier.c.term >= _low,
                earlier.c.term < _terms.c.term,
            ),
        )
        .limit(MAX_COUNTED + 1)
        .subquery()
    )
    return select(func.count()).select_from(firsts)


_FIRST_PAGE = {bounded: _first_page(bounded) for bounded in (True, False)}
_COUNT = {bounded: _bounded_count(bounded) for bounded in (True, False)}
_BY_STRIPE_ID = select(_customers.c.id, _customers.c.name, _customers.c.email).where(
    _customers.c.stripe_customer_id == bindparam("stripe_customer_id")
)
_orders = Order.__table__
_BY_ORDER_NUMBER = (
    select(_customers.c.id, _customers.c.name, _customers.c.email)
    .join(_orders, _orders.c.customer_id == _customers.c.id)
    .where(_orders.c.number == bindparam("number"))
)


def find_customers(reader: Reader, text: str) -> SearchResult:
    """Customers matching `text`, best first: whole words before longer words that start with them."""
    # Control characters and lone surrogates can match nothing, and PostgreSQL refuses NUL in text.
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs") or ch.isspace()).strip()
    if _STRIPE_CUSTOMER_ID.match(text):
        found = _as_matches(reader.execute(_BY_STRIPE_ID, {"stripe_customer_id": text}))
        return SearchResult(text, found, len(found))
    number = order_number(text)
    if number:
        found = _as_matches(reader.execute(_BY_ORDER_NUMBER, {"number": number}))
        if found:
            return SearchResult(text, found, len(found))
    words = query_words(text)
    if not words:
        return SearchResult(text, [], 0)
    if len(set(words)) == 1:
        return _one_word(reader, text, words[0])
    return _several_words(reader, text, words)


def _one_word(reader: Reader, text: str, word: str) -> SearchResult:
    upper = _next_prefix(word)
    bounds = {"low": word, "high": upper}
    rows = reader.execute(_FIRST_PAGE[upper is not None], bounds).all()
    matches = _as_matches(rows)
    total = len(matches)
    if len(rows) == _WINDOW:
        total = reader.execute(_COUNT[upper is not None], bounds).scalar_one()
    return _result(text, matches[:MAX_RESULTS], total)


def _several_words(reader: Reader, text: str, words: list[str]) -> SearchResult:
    """Customers with a term for every word, ranked by the terms of the word that leads.

    When one word is rare, walk its few customers and check the others through the covering index (one seek
    each). When every word is common, let the database intersect their ranges instead of probing thousands.
    """
    by_length = sorted(set(words), key=len, reverse=True)
    sizes = dict(zip(by_length, _range_sizes(reader, by_length, PROBE_LIMIT + 1), strict=True))
    rarest = min(sizes, key=sizes.__getitem__)
    lead = aliased(CustomerSearchTerm)
    query = select(lead.customer_id).where(_prefix_range(lead.term, rarest))
    if sizes[rarest] <= PROBE_LIMIT:
        for word in (w for w in sizes if w != rarest):
            other = aliased(CustomerSearchTerm)
            query = query.where(
                exists().where(other.customer_id == lead.customer_id, _prefix_range(other.term, word))
            )
    else:
        common = intersect(
            *(
                select(CustomerSearchTerm.customer_id).where(_prefix_range(CustomerSearchTerm.term, w))
                for w in sizes
            )
        ).subquery()
        query = query.join(common, common.c.customer_id == lead.customer_id)
    ranked = _distinct(
        reader.scalars(query.order_by(lead.term, lead.customer_id).limit((MAX_COUNTED + 1) * 4))
    )
    found = ranked[:MAX_RESULTS]
    if not found:
        return _result(text, [], 0)
    rows = reader.execute(
        select(_customers.c.id, _customers.c.name, _customers.c.email).where(_customers.c.id.in_(found))
    )
    by_id = {row.id: row for row in rows}
    return _result(text, _as_matches(by_id[i] for i in found if i in by_id), len(ranked))


def _range_sizes(reader: Reader, words: list[str], cap: int) -> list[int]:
    """How many terms start with each word, counting no further than `cap`: one statement for them all."""
    return list(
        reader.execute(
            select(
                *(
                    select(func.count())
                    .select_from(
                        select(CustomerSearchTerm.term)
                        .where(_prefix_range(CustomerSearchTerm.term, word))
                        .limit(cap)
                        .subquery()
                    )
                    .scalar_subquery()
                    for word in words
                )
            )
        ).one()
    )


def _result(text: str, top: list[Match], counted: int) -> SearchResult:
    capped = counted > MAX_COUNTED
    return SearchResult(text, top, min(counted, MAX_COUNTED), capped=capped)


def _as_matches(rows: Iterable) -> list[Match]:
    """Rows of (customer id, name, email) as matches, each customer once, in the rows' order."""
    matches: dict[int, Match] = {}
    for customer_id, name, email in rows:
        if customer_id not in matches:
            matches[customer_id] = Match(customer_id, shown_name(name, email), email)
    return list(matches.values())


def _prefix_range(column, prefix: str):
    upper = _next_prefix(prefix)
    if upper is None:
        return column >= prefix
    return and_(column >= prefix, column < upper)


def _next_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (code point order)."""
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i])
        if code < 0x10FFFF:
            bumped = code + 1
            if 0xD800 <= bumped <= 0xDFFF:  # surrogates cannot be encoded
                bumped = 0xE000
            return prefix[:i] + chr(bumped)
    return None


def _distinct(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(ids))
