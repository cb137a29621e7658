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

from sqlalchemy import and_, exists, func, intersect, select
from sqlalchemy.orm import Session, aliased

from bot.models import Customer, CustomerSearchTerm, Order
from bot.naming import shown_name
from bot.viewmodels import Match, SearchResult

MAX_RESULTS = 10
MAX_COUNTED = 1000  # beyond this the list says "More than 1,000"
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


def find_customers(session: Session, text: str) -> SearchResult:
    """Customers matching `text`, best first: whole words before longer words that start with them."""
    # Control characters and lone surrogates can match nothing, and PostgreSQL refuses NUL in text.
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs") or ch.isspace()).strip()
    if _STRIPE_CUSTOMER_ID.match(text):
        found = list(session.scalars(select(Customer.id).where(Customer.stripe_customer_id == text)))
        return SearchResult(text, _matches(session, found), len(found))
    number = order_number(text)
    if number:
        found = list(session.scalars(select(Order.customer_id).where(Order.number == number)))
        if found:
            return SearchResult(text, _matches(session, found), len(found))
    words = query_words(text)
    if not words:
        return SearchResult(text, [], 0)
    if len(set(words)) == 1:
        return _one_word(session, text, words[0])
    return _several_words(session, text, words)


def _one_word(session: Session, text: str, word: str) -> SearchResult:
    """Walk the word's range in term order: the first page costs a few index entries however common it is."""
    ranked = (
        select(CustomerSearchTerm.customer_id)
        .where(_prefix_range(CustomerSearchTerm.term, word))
        .order_by(CustomerSearchTerm.term, CustomerSearchTerm.customer_id)
    )
    window = MAX_RESULTS * 4  # a customer can match one word through several of their terms
    fetched = list(session.scalars(ranked.limit(window)))
    candidate_ids = _distinct(fetched)
    total = len(candidate_ids)
    if len(fetched) == window:
        capped = ranked.limit(MAX_COUNTED * 4).subquery()
        total = session.scalar(select(func.count(func.distinct(capped.c.customer_id)))) or 0
    return _result(session, text, candidate_ids[:MAX_RESULTS], total)


def _several_words(session: Session, text: str, words: list[str]) -> SearchResult:
    """Customers with a term for every word, ranked by the terms of the word that leads.

    When one word is rare, walk its few customers and check the others through the covering index (one seek
    each). When every word is common, let the database intersect their ranges instead of probing thousands.
    """
    sizes = {w: _range_size(session, w, PROBE_LIMIT + 1) for w in sorted(set(words), key=len, reverse=True)}
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
    ranked = _distinct(session.scalars(query.order_by(lead.term, lead.customer_id).limit(MAX_COUNTED * 4)))
    return _result(session, text, ranked[:MAX_RESULTS], len(ranked))


def _range_size(session: Session, word: str, cap: int) -> int:
    """How many terms start with `word`, counting no further than `cap`."""
    capped = select(CustomerSearchTerm.term).where(_prefix_range(CustomerSearchTerm.term, word)).limit(cap)
    return session.scalar(select(func.count()).select_from(capped.subquery())) or 0


def _result(session: Session, text: str, top: list[int], counted: int) -> SearchResult:
    capped = counted > MAX_COUNTED
    return SearchResult(text, _matches(session, top), min(counted, MAX_COUNTED), capped=capped)


def _matches(session: Session, customer_ids: list[int]) -> list[Match]:
    rows = {
        row.id: row
        for row in session.execute(
            select(Customer.id, Customer.name, Customer.email).where(Customer.id.in_(customer_ids))
        )
    }
    return [
        Match(i, shown_name(rows[i].name, rows[i].email), rows[i].email) for i in customer_ids if i in rows
    ]


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
