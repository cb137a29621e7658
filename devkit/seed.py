"""Deterministic, realistic demo data for every table of the data model.

`seed(db, customers=N)` fills an empty, migrated database with customers 1..N, their orders and order lines,
subscriptions and payment plans, the payments those billed, refunds, two disputes (one awaiting evidence, one
lost), and the search terms `bot.search` looks up. Customer 1 is always Jane Doe, who has one of everything, and customer 21 Zoë Lefèvre (`/customer zoe` finds
her); every other customer, and the rest of Zoë's data, is drawn from `random.Random(customer_id)`.

The data is as of a day, `today` (by default today in UTC): every time is an offset from that day's midnight UTC
(`reference_time`), never from the clock, so the same N and day give the same rows byte for byte. Seen on that day,
past events are in the past and next bills, trial ends and period ends lie ahead (at least most of a day ahead;
a few weeks for most), a missed payment is days old, not months.

A million customers must take minutes, so rows are plain tuples written one transaction per batch through the
driver's own bulk path: executemany on SQLite and COPY on PostgreSQL, measured 2 and 3 times faster than
SQLAlchemy's `execute(insert(table), dicts)`. A second process generates the next batch meanwhile.
"""

from __future__ import annotations

import multiprocessing
import random
import string
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Table, insert, select

from bot import order_book
from bot.db import Database
from bot.models import (
    Customer,
    CustomerSearchTerm,
    Order,
    OrderLine,
    OrderSource,
    OrderStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    Product,
    Recurring,
    RecurringKind,
    RecurringStatus,
    Refund,
)
from bot.search import customer_terms, fold


def reference_time(day: date) -> datetime:
    """The "now" of the demo data as of `day`: every timestamp is an offset from it."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


BATCH_SIZE = 10_000
MAX_ORDERS = 15  # per random customer
HOUR = 3600
DAY = 86_400
HISTORY = 3 * 365 * DAY  # how far back customers go

ZOE = 21  # Zoë Lefèvre, whom the README finds with `/customer zoe` (a subscriber with a trial ending soon)
ACTIVE, TRIALING, PAST_DUE, PAUSED, INCOMPLETE, CANCELED, COMPLETED = (
    RecurringStatus(s).value
    for s in ("active", "trialing", "past_due", "paused", "incomplete", "canceled", "completed")
)
PAID, FAILED, OPEN, VOID = (PaymentStatus(s).value for s in ("paid", "failed", "open", "void"))
CHECKOUT, INTERNAL, SUBSCRIPTION_ORDER, PAYMENT_PLAN_ORDER = (s.value for s in OrderSource)
ONE_OFF, INITIAL_PAYMENT, RENEWAL_PAYMENT, INSTALMENT_PAYMENT = (
    PaymentKind.ONE_OFF.value,
    PaymentKind.INITIAL.value,
    PaymentKind.RENEWAL.value,
    PaymentKind.INSTALMENT.value,
)


@dataclass(frozen=True)
class SeedSummary:
    customers: int
    orders: int
    subscriptions: int
    payment_plans: int
    payments: int
    refunds: int
    seconds: float


# --- Catalog -------------------------------------------------------------------------------------------------

# currency: (price of one US dollar in it, minor units per major unit, price rounding step in minor units)
_CURRENCIES = {
    "usd": (1.0, 100, 1),
    "eur": (1.0, 100, 1),
    "gbp": (0.8, 100, 1),
    "cad": (1.4, 100, 1),
    "aud": (1.5, 100, 1),
    "jpy": (150.0, 1, 10),
    "kwd": (0.3, 1000, 10),
}


def _prices(usd: float) -> dict[str, int]:
    """A US dollar price in every currency, in minor units, rounded to that currency's step (in decimal)."""
    dollars = Decimal(str(usd))
    return {
        currency: max(step, int((dollars * Decimal(str(rate)) * minor / step).to_integral_value()) * step)
        for currency, (rate, minor, step) in _CURRENCIES.items()
    }


@dataclass(frozen=True)
class _Product:
    name: str
    prices: dict[str, int]


def _products(*items: tuple[str, float]) -> tuple[_Product, ...]:
    return tuple(_Product(name, _prices(usd)) for name, usd in items)


_CHECKOUT_PRODUCTS = _products(
    ("Photography Masterclass", 199),
    ("Sourdough from Scratch (video course)", 79),
    ("Brand Strategy Workbook", 29),
    ("1:1 Coaching Session (60 min)", 150),
    ("Watercolor Basics", 49),
    ("Spanish for Travelers", 89),
    ("UX Portfolio Review", 250),
    ("Lightroom Preset Pack", 19.99),
    ("Yoga Teacher Training — Module 1", 450),
    ("Virtual Conference Ticket", 120),
    ("E-book: Deep Work Habits", 12.5),
    ("Songwriting Bootcamp", 349),
)
_ADD_ONS = _products(
    ("Bonus Q&A replay", 15),
    ("Printed workbook", 25),
    ("Extra seat", 60),
    ("Certificate of completion", 10),
    ("Priority support (1 year)", 30),
    ("Templates bundle", 19),
)
_INTERNAL_CHARGES = _products(
    ("Add-on: extra coaching call", 90),
    ("Late registration fee", 25),
    ("Consulting (2 hours)", 300),
    ("Replacement shipment", 15),
    ("Workshop seat", 75),
    ("Upgrade to VIP ticket", 180),
)


@dataclass(frozen=True)
class _Offer:
    """A product sold by subscription or in instalments."""

    kind: str
    product: _Product
    interval: str
    interval_count: int = 1
    installments: int | None = None  # payment plans only
    most_billed: int = 10  # the longest billing history a random customer gets

    @property
    def shortest_period(self) -> int:
        """Seconds in the shortest period this offer can have (28 days for a month, 365 for a year)."""
        return {"day": 1, "week": 7, "month": 28, "year": 365}[self.interval] * DAY * self.interval_count

    def bill(self, start: datetime, periods: int) -> datetime:
        """The billing date `periods` periods after `start` (before it when negative)."""
        count = periods * self.interval_count
        if self.interval == "month":
            return _add_months(start, count)
        if self.interval == "year":
            return _add_months(start, 12 * count)
        return start + timedelta(days=count * (7 if self.interval == "week" else 1))


def _subscription(name: str, usd: float, interval: str, count: int = 1, most_billed: int = 10) -> _Offer:
    return _Offer(
        RecurringKind.SUBSCRIPTION.value, _Product(name, _prices(usd)), interval, count, None, most_billed
    )


def _payment_plan(name: str, usd: float, installments: int) -> _Offer:
    kind = RecurringKind.PAYMENT_PLAN.value
    return _Offer(kind, _Product(name, _prices(usd)), "month", 1, installments, installments)


_PRO_MEMBERSHIP = _subscription("Pro Membership", 29, "month")
_STUDIO_ANNUAL = _subscription("Studio Membership (annual)", 290, "year", most_billed=2)
_WEEKLY_COACHING = _subscription("Weekly Coaching", 35, "week", most_billed=12)
_TEACHER_TRAINING = _payment_plan("Yoga Teacher Training", 150, 6)
_DATA_FEED = _subscription("Market Data Feed (daily)", 4, "day")
_SUBSCRIPTIONS = (
    _PRO_MEMBERSHIP,
    _PRO_MEMBERSHIP,
    _subscription("Community Access", 9, "month"),
    _subscription("Studio Membership", 49, "month"),
    _STUDIO_ANNUAL,
    _WEEKLY_COACHING,
    _subscription("Quarterly Sketchbook Box", 60, "month", 3, most_billed=4),
)
_PAYMENT_PLANS = (
    _TEACHER_TRAINING,
    _payment_plan("Business Accelerator", 99, 12),
    _payment_plan("Photography Masterclass", 70, 3),
    _payment_plan("Mentorship Program", 250, 4),
    _payment_plan("Coding Bootcamp", 300, 10),
)
# Weighted by repetition, so a pick is one uniform draw.
_SUBSCRIPTION_STATUSES = (
    (ACTIVE,) * 45 + (CANCELED,) * 22 + (PAST_DUE,) * 10 + (PAUSED,) * 8 + (TRIALING,) * 8 + (INCOMPLETE,) * 7
)
_PLAN_STATUSES = (
    (ACTIVE,) * 45
    + (COMPLETED,) * 25
    + (CANCELED,) * 12
    + (PAST_DUE,) * 10
    + (PAUSED,) * 6
    + (INCOMPLETE,) * 2
)

_FAILURE_REASONS = (
    "Your card was declined.",
    "Your card was declined.",
    "Your card has insufficient funds.",
    "Your card has expired.",
    "Your card does not support this type of purchase.",
)
_REFUND_REASONS = ("requested_by_customer",) * 7 + ("duplicate",) * 2 + ("fraudulent", None)
_REFUND_NOTES = (
    "Customer asked by email",
    "Charged twice",
    "Goodwill gesture",
    "Course not started",
    None,
    None,
)
_STAFF = ("U04JQ2M7K8A", "U05B3X9RZ1C", "U03N7TQ4W2E", None)  # None: refunded in the Stripe Dashboard
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# --- People --------------------------------------------------------------------------------------------------

_FIRST_NAMES = (
    "James", "Olivia", "Michael", "Emily", "David", "Sarah", "Daniel", "Emma", "Christopher", "Grace", "Liam",
    "Chloe", "Zoë", "José", "María", "Sofía", "Alejandro", "Lucía", "Joaquín", "Inês", "João", "Ramón",
    "François", "Amélie", "Hélène", "Jérôme", "Céline", "Jürgen", "Jörg", "Lena", "Björn", "Günter", "Søren",
    "Åsa", "Bjørn", "Sigrid", "Freja", "Łukasz", "Małgorzata", "Wojciech", "Zuzana", "Tomáš", "Agnieszka",
    "Ayşe", "Mehmet", "Çağla", "Siobhán", "Niamh", "Seán", "Aoife", "Giulia", "Matteo", "Niccolò",
    "Dimitrios", "Eleni", "Priya", "Arjun", "Ananya", "Rahul", "Lakshmi", "Wei", "Xiaoming", "Mei", "Haruto",
    "Yuki", "Sakura", "Takeshi", "Min-jun", "Ji-woo", "Seo-yeon", "Thảo", "Minh", "Mohammed", "Fatima",
    "Omar", "Layla", "Youssef", "Chinedu", "Amara", "Kwame", "Ngozi", "Oluwaseun", "Thandiwe", "Noa", "Yael",
    "Avi", "Dmitri", "Olena", "Anastasia", "Mateus", "Camille", "Noémie", "Maëlle", "Raphaël", "Ingrid",
    "Pedro", "Valentina", "Santiago", "Aroha", "Tāne", "Keanu", "Leilani", "Ahmad", "Zeynep", "Anne-Marie",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Taylor", "García", "Martínez", "Rodríguez", "Hernández",
    "López", "González", "Pérez", "Müller", "Schröder", "Weiß", "Köhler", "Dubois", "Lefèvre", "Moreau",
    "Girard", "O'Brien", "O'Connor", "D'Angelo", "N'Diaye", "MacDonald", "McAllister", "Nowak", "Kowalski",
    "Wiśniewski", "Dąbrowski", "Jensen", "Sørensen", "Østergaard", "Andersson", "Nyström", "Åkesson",
    "Rossi", "Bianchi", "Esposito", "Papadopoulos", "Yılmaz", "Öztürk", "Kaya", "Nguyễn", "Trần", "Lê",
    "Kim", "Park", "Choi", "Wang", "Li", "Zhang", "Chen", "Liu", "Tanaka", "Suzuki", "Satō", "Watanabe",
    "Patel", "Sharma", "Singh", "Iyer", "Reddy", "Okafor", "Adeyemi", "Mensah", "Abdullah", "Haddad",
    "Khalil", "Cohen", "Levi", "Ivanov", "Kovalenko", "van der Berg", "de la Cruz", "dos Santos", "Silva",
    "Costa", "Ferreira", "Fitzgerald", "Kelly", "Murphy", "Ó Súilleabháin", "Novák", "Dvořák", "Horváth",
    "Nagy", "Virtanen", "Häkkinen", "Jóhannsdóttir", "Al-Sayed", "Ben-David", "Fernández", "Moana",
)  # fmt: skip
_LONG_NAMES = (
    ("Hubert Blaine", "Wolfeschlegelsteinhausenbergerdorff"),
    ("María de los Ángeles", "Fernández-Castañeda y Villanueva"),
    ("Venkata Narasimha Raju", "Vari Peta Subrahmanya Sastry"),
    ("Adebayo Oluwaseun Olumide", "Babatunde-Ogunlesi"),
    ("Siobhán Máire", "Ní Mhaolchatha-O'Sullivan"),
    ("Kalaniʻōpuʻu", "Kamehameha-Keaweʻaheulu"),
    ("Maximiliane Charlotte Friederike", "von Hohenzollern-Sigmaringen"),
    ("Nguyễn Thị Minh", "Khai Phạm-Trần"),
)
_MIDDLE_INITIALS = tuple(f"{letter}." for letter in "ABCDEHJKLMPRSTW")
_EMAIL_DOMAINS = ("gmail.com",) * 8 + (
    "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "gmx.de", "web.de", "orange.fr",
    "libero.it", "btinternet.com", "yahoo.co.jp", "naver.com", "fastmail.com", "example.com", "acme.io",
)  # fmt: skip
_EMAIL_FORMS = (
    "{first}.{last}{n}", "{first}.{last}{n}", "{first}{last}{n}", "{initial}{last}{n}", "{first}_{last}{n}",
    "{last}.{first}{n}", "{first}{n}",
)  # fmt: skip
_ASCII = frozenset(string.ascii_lowercase + string.digits + "-")


def _email_word(text: str) -> str:
    """A name as it appears in an email address: 'Ó Súilleabháin' -> 'osuilleabhain'."""
    return "".join(ch for ch in fold(text) if ch in _ASCII)


_EMAIL_WORDS = {name: _email_word(name) for pair in _LONG_NAMES for name in pair}
_EMAIL_WORDS.update((name, _email_word(name)) for name in _FIRST_NAMES + _LAST_NAMES)

_CARD_BRANDS = ("visa",) * 10 + ("mastercard",) * 6 + ("amex",) * 3 + ("discover",) * 1
# Most customers pay in dollars; a customer's currency decides where their billing address is.
_CURRENCY_MIX = (
    ("usd",) * 70 + ("eur",) * 10 + ("gbp",) * 6 + ("cad",) * 5 + ("aud",) * 5 + ("jpy", "jpy", "kwd")
)

# (street with {n} for the house number, city, state or region, postal code, country)
_US_ADDRESSES = (
    ("{n} Maple Avenue", "Portland", "OR", "97205", "US"),
    ("{n} Oak Street", "Austin", "TX", "78701", "US"),
    ("{n} Broadway", "New York", "NY", "10012", "US"),
    ("{n} Peachtree St NE", "Atlanta", "GA", "30303", "US"),
    ("{n} N Lake Shore Dr", "Chicago", "IL", "60611", "US"),
    ("{n} Mission Street", "San Francisco", "CA", "94103", "US"),
    ("{n} Pine Street", "Seattle", "WA", "98101", "US"),
    ("{n} Beacon Street", "Boston", "MA", "02116", "US"),
)
_ABROAD_USD_ADDRESSES = (
    ("{n} MG Road", "Bengaluru", "KA", "560001", "IN"),
    ("Av. Paulista, {n}", "São Paulo", "SP", "01310-100", "BR"),
    ("{n} Orchard Road", "Singapore", None, "238879", "SG"),
    ("{n} Admiralty Way", "Lagos", "LA", "106104", "NG"),
    ("Paseo de la Reforma {n}", "Ciudad de México", "CDMX", "06600", "MX"),
    ("{n} Long Street", "Cape Town", "WC", "8001", "ZA"),
)
_ADDRESSES = {
    "usd": _US_ADDRESSES * 4 + _ABROAD_USD_ADDRESSES,
    "eur": (
        ("Hauptstraße {n}", "Berlin", None, "10115", "DE"),
        ("Königsallee {n}", "Düsseldorf", None, "40212", "DE"),
        ("{n} rue de Rivoli", "Paris", None, "75001", "FR"),
        ("{n} cours Mirabeau", "Aix-en-Provence", None, "13100", "FR"),
        ("Calle de Alcalá, {n}", "Madrid", None, "28014", "ES"),
        ("Via Roma {n}", "Milano", "MI", "20121", "IT"),
        ("Keizersgracht {n}", "Amsterdam", None, "1015 CJ", "NL"),
        ("{n} Grafton Street", "Dublin", None, "D02 VF65", "IE"),
        ("Mannerheimintie {n}", "Helsinki", None, "00100", "FI"),
    ),
    "gbp": (
        ("{n} Baker Street", "London", None, "NW1 6XE", "GB"),
        ("{n} Deansgate", "Manchester", None, "M3 4LQ", "GB"),
        ("{n} Princes Street", "Edinburgh", None, "EH2 2ER", "GB"),
    ),
    "cad": (
        ("{n} Queen Street West", "Toronto", "ON", "M5H 2N2", "CA"),
        ("{n} rue Saint-Denis", "Montréal", "QC", "H2X 3K8", "CA"),
        ("{n} Granville Street", "Vancouver", "BC", "V6C 1T2", "CA"),
    ),
    "aud": (
        ("{n} George Street", "Sydney", "NSW", "2000", "AU"),
        ("{n} Collins Street", "Melbourne", "VIC", "3000", "AU"),
    ),
    "jpy": (
        ("1-{n} Jingumae", "Shibuya-ku", "Tokyo", "150-0001", "JP"),
        ("2-{n}-3 Umeda, Kita-ku", "Osaka", "Osaka", "530-0001", "JP"),
    ),
    "kwd": (
        ("Block 3, Street {n}", "Salmiya", "Hawalli", "20003", "KW"),
        ("Arabian Gulf Street {n}", "Kuwait City", "Al Asimah", "15000", "KW"),
    ),
}
_SECOND_LINES = ("Apt 4B", "Suite 200", "Floor 3", "Unit 12", "c/o Front Desk")


# --- Drafts: one customer's data before ids are assigned --------------------------------------------------------


@dataclass(slots=True)
class _OrderDraft:
    created_at: datetime
    source: str
    currency: str
    lines: list[tuple[str, int, int]]  # description, quantity, unit amount
    recurring: _RecurringDraft | None = None
    refunds: list[tuple[int, datetime, str | None, str | None, str | None]] = field(default_factory=list)
    order_id: int = 0  # a one-off order's; a payment of a subscription or plan is its order's

    @property
    def total(self) -> int:
        return sum(quantity * unit for _, quantity, unit in self.lines)


@dataclass(slots=True)
class _PaymentDraft:
    due_at: datetime
    status: str
    failure_reason: str | None = None
    failed_at: datetime | None = None
    order: _OrderDraft | None = None  # the charge that paid it, with its refunds


@dataclass(slots=True)
class _RecurringDraft:
    offer: _Offer
    currency: str
    status: str
    started_at: datetime
    current_period_end: datetime | None = None
    next_bill_at: datetime | None = None
    canceled_at: datetime | None = None
    cancel_at_period_end: bool = False
    payments_paused: bool = False
    paused_until: datetime | None = None
    payments: list[_PaymentDraft] = field(default_factory=list)
    id: int = 0
    order_id: int = 0  # the order that started it

    @property
    def amount(self) -> int:
        return self.offer.product.prices[self.currency]


@dataclass(slots=True)
class _CustomerDraft:
    id: int
    name: str
    email: str
    currency: str
    card: tuple[str, str, int, int]  # brand, last 4, expiry month, expiry year: the card the orders used
    card_on_file: bool
    address: tuple[
        str, str | None, str, str | None, str, str
    ]  # line 1, line 2, city, state, postal code, country
    created_at: datetime
    recurring: list[_RecurringDraft] = field(default_factory=list)
    orders: list[_OrderDraft] = field(default_factory=list)  # one-off orders; the others hang off payments


def _pick(rng: random.Random, items: tuple):
    return items[int(rng.random() * len(items))]


def _seconds(delta: timedelta) -> int:
    return delta // timedelta(seconds=1)


def _between(rng: random.Random, low: int, high: int) -> int:
    """Whole seconds in [low, high)."""
    return low + int(rng.random() * (high - low))


def _add_months(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.month - 1 + months, 12)
    day = moment.day
    if day > 28:
        day = min(day, _days_in_month(moment.year + year, month + 1))
    return moment.replace(year=moment.year + year, month=month + 1, day=day)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _random_customer(customer_id: int, now: datetime) -> _CustomerDraft:
    rng = random.Random(customer_id)
    name, email = _random_identity(rng, customer_id)
    if customer_id == ZOE:
        name, email = "Zoë Lefèvre", "zoe.lefevre@example.com"
    currency = _pick(rng, _CURRENCY_MIX)
    customer = _CustomerDraft(
        customer_id,
        name,
        email,
        currency,
        _card(rng, now),
        rng.random() >= 0.05,
        _address(rng, currency),
        now,
    )
    budget = MAX_ORDERS
    if customer.card_on_file and rng.random() < 0.42:
        for _ in range(_pick(rng, (1, 1, 1, 1, 1, 2, 2, 3))):
            recurring = _random_recurring(rng, currency, now)
            paid = sum(p.status == PAID for p in recurring.payments)
            if paid <= budget:
                customer.recurring.append(recurring)
                budget -= paid
    earliest = min((r.started_at for r in customer.recurring), default=now)
    joined = now - timedelta(seconds=_between(rng, DAY, HISTORY))
    customer.created_at = min(joined, earliest - timedelta(seconds=_between(rng, 60, 30 * DAY)))
    # Few customers have no order at all; beyond that, each further order is a little less likely.
    wanted = int(rng.expovariate(0.35)) + (0 if customer.recurring or rng.random() < 0.05 else 1)
    one_offs = wanted if wanted <= budget else int(rng.random() * (budget + 1))
    sources = (CHECKOUT,) * 4 + (INTERNAL,) * customer.card_on_file
    for _ in range(one_offs):
        _random_one_off_order(rng, customer, _pick(rng, sources), now)
    _add_random_refunds(rng, customer, now)
    return customer


def _random_identity(rng: random.Random, customer_id: int) -> tuple[str, str]:
    """A name and a matching, unique email address."""
    if rng.random() < 0.004:
        first, last = _pick(rng, _LONG_NAMES)
        last_word = _EMAIL_WORDS[last]
    else:
        first, last = _pick(rng, _FIRST_NAMES), _pick(rng, _LAST_NAMES)
        last_word = _EMAIL_WORDS[last]
        if rng.random() < 0.06:
            second = _pick(rng, _LAST_NAMES)
            last, last_word = f"{last}-{second}", f"{last_word}-{_EMAIL_WORDS[second]}"
    first_word = _EMAIL_WORDS[first]
    middle = f" {_pick(rng, _MIDDLE_INITIALS)}" if rng.random() < 0.05 else ""
    # The customer id as a suffix keeps every address unique: the part before it never ends in a digit.
    local = _pick(rng, _EMAIL_FORMS).format(
        first=first_word, last=last_word, initial=first_word[0], n=customer_id
    )
    return f"{first}{middle} {last}", f"{local}@{_pick(rng, _EMAIL_DOMAINS)}"


def _card(rng: random.Random, now: datetime) -> tuple[str, str, int, int]:
    """Brand, last 4 digits, expiry month and year; about one card in sixteen has expired."""
    last4 = f"{int(rng.random() * 10_000):04d}"
    years_left = -1 if rng.random() < 0.06 else 1 + int(rng.random() * 5)
    return _pick(rng, _CARD_BRANDS), last4, 1 + int(rng.random() * 12), now.year + years_left


def _address(rng: random.Random, currency: str) -> tuple[str, str | None, str, str | None, str, str]:
    street, city, state, postal_code, country = _pick(rng, _ADDRESSES[currency])
    line2 = _pick(rng, _SECOND_LINES) if rng.random() < 0.2 else None
    return street.format(n=1 + int(rng.random() * 400)), line2, city, state, postal_code, country


def _random_recurring(rng: random.Random, currency: str, now: datetime) -> _RecurringDraft:
    if rng.random() < 0.65:
        offer = _pick(rng, _SUBSCRIPTIONS)
        status = _pick(rng, _SUBSCRIPTION_STATUSES)
    else:
        offer = _pick(rng, _PAYMENT_PLANS)
        status = _pick(rng, _PLAN_STATUSES)
    most = offer.most_billed
    if status == COMPLETED:
        billed = most
    elif offer.installments and status in (ACTIVE, CANCELED):
        billed = 1 + int(rng.random() * (most - 1))  # some instalments are still to come
    else:
        billed = 1 + int(rng.random() * most)
    cancel_at_period_end = status == ACTIVE and not offer.installments and rng.random() < 0.15
    return _recurring(rng, offer, currency, status, billed, now, cancel_at_period_end=cancel_at_period_end)


def _recurring(
    rng: random.Random,
    offer: _Offer,
    currency: str,
    status: str,
    billed: int,
    now: datetime,
    *,
    cancel_at_period_end: bool = False,
) -> _RecurringDraft:
    """A subscription or plan in `status`, billed `billed` times so far (trials and incomplete ones: never/once).

    Billing dates fall `offer` periods apart, each counted from the latest one (as Stripe counts from its billing
    cycle anchor: a month from the 31st is the 30th or the 28th). The latest is before `now` and, while the
    agreement is live, the next one after it. Each billing date has one payment, which when paid produced a
    renewal or instalment order.
    """
    if status == TRIALING:  # ends within two weeks
        started = now - timedelta(seconds=_between(rng, HOUR, 13 * DAY))
        trial_end = started + timedelta(days=14)
        return _RecurringDraft(offer, currency, status, started, trial_end, trial_end)
    if status == INCOMPLETE:  # Stripe lets a first payment be completed for 23 hours
        started = now - timedelta(seconds=_between(rng, HOUR, 22 * HOUR))
        draft = _RecurringDraft(offer, currency, status, started, offer.bill(started, 1))
        draft.payments.append(_failed_payment(rng, started, OPEN))
        return draft

    ended = status in (CANCELED, COMPLETED)
    since_end = 1 + int(rng.random() * min(12, HISTORY // offer.shortest_period - billed)) if ended else 0
    # The latest billing date (for an ended agreement, the one that would have been) falls within the period before
    # `now` (far enough back that its payment had failed or produced its order by then), leaving the next one at
    # least a day ahead (half a day for a daily one); a missed payment is at most three weeks old, as Stripe's
    # retries end about then.
    period = offer.shortest_period
    window = period - DAY if period >= 2 * DAY else period // 2
    if status == PAST_DUE:
        window = min(window, 21 * DAY)
    latest = now - timedelta(seconds=_between(rng, 5 * HOUR, window))
    first = billed + since_end - 1  # periods from the first billing date to the latest
    due = [offer.bill(latest, k - first) for k in range(billed)]
    following = offer.bill(latest, billed - first)
    draft = _RecurringDraft(offer, currency, status, due[0], cancel_at_period_end=cancel_at_period_end)
    last_status = PAID
    if status == PAST_DUE:
        last_status = FAILED  # the missed payment
    elif status == CANCELED and billed > 1 and rng.random() < 0.25:
        last_status = VOID  # it failed, and the invoice was voided when the subscription was canceled
    voided_in_pause = min(billed - 1, _pick(rng, (0, 0, 1, 2))) if status == PAUSED else 0
    for k, due_at in enumerate(due):
        if k >= billed - voided_in_pause:
            draft.payments.append(_PaymentDraft(due_at, VOID))
        elif k < billed - 1 or last_status == PAID:
            draft.payments.append(_paid_payment(rng, draft, due_at, k))
        else:
            draft.payments.append(_failed_payment(rng, due_at, last_status))
    draft.current_period_end = following
    if status == CANCELED:
        lasted = _seconds(min(following, now) - due[-1])
        draft.canceled_at = due[-1] + timedelta(seconds=_between(rng, HOUR, lasted - HOUR))
    elif status == PAUSED:
        draft.payments_paused = True
        if rng.random() < 0.6:
            draft.paused_until = now + timedelta(days=_between(rng, 3, 90))
        draft.next_bill_at = draft.paused_until
    elif status in (ACTIVE, PAST_DUE) and not cancel_at_period_end:
        draft.next_bill_at = following
    return draft


def _paid_payment(
    rng: random.Random, recurring: _RecurringDraft, due_at: datetime, index: int
) -> _PaymentDraft:
    offer = recurring.offer
    if offer.installments:
        description = f"{offer.product.name} — instalment {index + 1} of {offer.installments}"
    else:
        if offer.interval in ("month", "year"):
            description = f"{offer.product.name} — {_MONTHS[due_at.month]} {due_at.year}"
        else:
            description = f"{offer.product.name} — {due_at.day} {_MONTHS[due_at.month]} {due_at.year}"
    created = due_at + timedelta(seconds=_between(rng, 5, 900))
    # The charge that paid it: it carries the payment's refunds (a payment, not an order of its own).
    charge = _OrderDraft(created, "", recurring.currency, [(description, 1, recurring.amount)], recurring)
    return _PaymentDraft(due_at, PAID, order=charge)


def _failed_payment(rng: random.Random, due_at: datetime, status: str) -> _PaymentDraft:
    failed_at = due_at + timedelta(seconds=_between(rng, 5, 4 * HOUR))
    return _PaymentDraft(due_at, status, _pick(rng, _FAILURE_REASONS), failed_at)


def _random_one_off_order(
    rng: random.Random, customer: _CustomerDraft, source: str, now: datetime
) -> _OrderDraft:
    """A one-off order at any time since the customer joined, now and then in another currency."""
    lifetime = _seconds(now - customer.created_at)
    created_at = customer.created_at + timedelta(seconds=_between(rng, 60, max(61, lifetime)))
    currency = customer.currency
    if rng.random() < 0.03:
        currency = "eur" if currency == "usd" else "usd"
    return _one_off_order(rng, customer, source, created_at, currency)


def _one_off_order(
    rng: random.Random, customer: _CustomerDraft, source: str, created_at: datetime, currency: str
) -> _OrderDraft:
    """A checkout or internal order of one product and maybe some add-ons, added to the customer."""
    catalog = _CHECKOUT_PRODUCTS if source == CHECKOUT else _INTERNAL_CHARGES
    main = _pick(rng, catalog)
    lines = [(main.name, 1, main.prices[currency])]
    extra = _pick(rng, (0, 0, 0, 0, 0, 0, 1, 1, 1, 2))
    first = int(rng.random() * len(_ADD_ONS))
    for k in range(extra):
        add_on = _ADD_ONS[(first + k) % len(_ADD_ONS)]
        lines.append((add_on.name, _pick(rng, (1, 1, 1, 2, 3)), add_on.prices[currency]))
    order = _OrderDraft(created_at, source, currency, lines)
    customer.orders.append(order)
    return order


def _all_charges(customer: _CustomerDraft) -> list[_OrderDraft]:
    """Every charge that paid something: the one-off orders, and the paid payments of subscriptions and plans."""
    paid = [p.order for r in customer.recurring for p in r.payments if p.order is not None]
    return customer.orders + paid


def _add_random_refunds(rng: random.Random, customer: _CustomerDraft, now: datetime) -> None:
    for order in _all_charges(customer):
        chance = rng.random()
        if chance < 0.035:
            _refund(rng, order, now, full=True)
        elif chance < 0.08:
            _refund(rng, order, now, full=False)


def _refund(rng: random.Random, order: _OrderDraft, now: datetime, *, full: bool) -> None:
    """Refund the rest of the order, or part of it, in one or two refunds."""
    since = order.refunds[-1][1] if order.refunds else order.created_at
    window = min(30 * DAY, _seconds(now - since))
    remaining = order.total - sum(refund[0] for refund in order.refunds)
    step = _CURRENCIES[order.currency][2]
    part = remaining * _pick(rng, (10, 20, 25, 50)) // 100 // step * step
    if window < HOUR or part <= 0:
        return
    if full:
        amounts = [remaining] if rng.random() < 0.8 else [part, remaining - part]
    else:
        amounts = [part] if rng.random() < 0.7 else [part, (remaining - part) // 2 // step * step]
    at = since
    for amount in amounts:
        if amount > 0:
            at += timedelta(seconds=_between(rng, 60, window // len(amounts)))
            reason = "requested_by_customer" if len(amounts) > 1 else _pick(rng, _REFUND_REASONS)
            order.refunds.append((amount, at, reason, _pick(rng, _REFUND_NOTES), _pick(rng, _STAFF)))


def _jane_doe(now: datetime) -> _CustomerDraft:
    """Customer 1, the demo customer with one of everything."""
    rng = random.Random(1)
    jane = _CustomerDraft(
        1,
        "Jane Doe",
        "jane.doe@example.com",
        "usd",
        ("visa", "4242", 8, now.year + 2),
        True,
        ("1428 Maple Avenue", "Apt 3", "Portland", "OR", "97205", "US"),
        created_at=now - timedelta(days=912, hours=7, minutes=13),  # or before her first subscription
    )
    jane.recurring = [
        _recurring(rng, _PRO_MEMBERSHIP, "usd", ACTIVE, 8, now),
        _recurring(rng, _TEACHER_TRAINING, "usd", ACTIVE, 3, now),
        _recurring(rng, _STUDIO_ANNUAL, "usd", CANCELED, 1, now),
        _recurring(rng, _WEEKLY_COACHING, "usd", PAST_DUE, 4, now),
    ]
    jane.created_at = min(jane.created_at, min(r.started_at for r in jane.recurring) - timedelta(days=2))
    jane.recurring[-1].payments[-1].failure_reason = "Your card has insufficient funds."
    one_offs = [
        _one_off_order(rng, jane, source, now - timedelta(days=days, hours=hours), "usd")
        for source, days, hours in (
            (CHECKOUT, 880, 3),
            (CHECKOUT, 610, 11),
            (INTERNAL, 400, 2),
            (CHECKOUT, 220, 16),
            (INTERNAL, 95, 9),
            (CHECKOUT, 12, 5),
        )
    ]
    _refund(rng, one_offs[1], now, full=True)
    _refund(rng, one_offs[3], now, full=False)
    _refund(rng, one_offs[3], now, full=False)
    _refund(rng, jane.recurring[0].payments[2].order, now, full=False)
    return jane


def _whale(customer_id: int, orders: int, now: datetime) -> _CustomerDraft:
    """A customer with `orders` orders: a daily subscription (one order, with many renewals) and one-off orders."""
    rng = random.Random(customer_id)
    whale = _CustomerDraft(
        customer_id,
        "Maximilian Vandersloot-Oyelaran",
        "max@vandersloot-oyelaran.com",
        "usd",
        ("amex", "1005", 12, now.year + 3),
        True,
        ("500 Boylston Street", "Floor 12", "Boston", "MA", "02116", "US"),
        created_at=now - timedelta(seconds=HISTORY),
    )
    renewals = min(max(orders // 2, 1), 1000)
    whale.recurring = [_recurring(rng, _DATA_FEED, "usd", ACTIVE, renewals, now)]
    for _ in range(orders - 1):
        _random_one_off_order(rng, whale, _pick(rng, (CHECKOUT, INTERNAL)), now)
    _add_random_refunds(rng, whale, now)
    return whale


# --- Rows ----------------------------------------------------------------------------------------------------

_STRIPE_ID_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # in ASCII order
_PAIRS = tuple(a + b for a in _STRIPE_ID_ALPHABET for b in _STRIPE_ID_ALPHABET)  # 62**2 = 3844
_NOISE_RNG = random.Random(0)
_NOISE = tuple("".join(_NOISE_RNG.choices(_STRIPE_ID_ALPHABET, k=18)) for _ in range(4096))
_FIRST_SERIAL = 13 * 62**5  # the first id of each kind starts "D00000"


def _stripe_id(prefix: str, serial: int, length: int = 24) -> str:
    """A unique Stripe-like id: the serial number in six base-62 digits, then noise.

    Like Stripe's own ids these grow with creation order, which also keeps inserts into the unique indexes on
    them at the end of the index instead of all over it (orders insert 1.5 times faster on SQLite).
    """
    n = _FIRST_SERIAL + serial
    noise = _NOISE[serial * 2_654_435_761 % 4096]
    return prefix + _PAIRS[n // 3844**2] + _PAIRS[n // 3844 % 3844] + _PAIRS[n % 3844] + noise[: length - 6]


# Insertion order (parents first) and the column order of each table's row tuples.
_TABLES: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (
        Customer.__table__,
        ("id", "name", "email", "created_at", "stripe_customer_id", "card_brand", "card_last4",
         "card_exp_month", "card_exp_year", "default_payment_method_id"),
    ),
    (CustomerSearchTerm.__table__, ("term", "customer_id")),
    (
        Recurring.__table__,
        ("id", "kind", "customer_id", "product", "amount", "currency", "interval", "interval_count", "status",
         "started_at", "canceled_at", "cancel_at_period_end", "current_period_end", "payments_paused",
         "paused_until", "next_bill_at", "stripe_subscription_id", "installments_total", "installments_paid"),
    ),
    (
        Order.__table__,
        ("id", "number", "customer_id", "created_at", "currency", "total", "amount_refunded", "status", "source",
         "recurring_id", "billing_name", "billing_line1", "billing_line2", "billing_city", "billing_state",
         "billing_postal_code", "billing_country"),
    ),
    (OrderLine.__table__, ("order_id", "position", "description", "quantity", "unit_amount")),
    (
        Payment.__table__,
        ("id", "order_id", "recurring_id", "kind", "due_at", "paid_at", "amount", "currency", "status",
         "failure_reason", "failed_at", "stripe_invoice_id", "stripe_payment_intent_id", "stripe_charge_id",
         "amount_refunded", "amount_refund_pending", "card_brand", "card_last4"),
    ),
    (
        Refund.__table__,
        ("id", "order_id", "payment_id", "amount", "currency", "reason", "note", "stripe_refund_id",
         "requested_by", "created_at"),
    ),
)  # fmt: skip


Rows = dict[str, list[tuple]]  # table name: row tuples in `_TABLES` column order


class _RowMaker:
    """Turns customer drafts into rows, numbering recurring, orders, payments and refunds as it goes."""

    def __init__(self, encode_time: Callable[[datetime | None], object]) -> None:
        self.time = encode_time
        self.recurring_id = self.order_id = self.payment_id = self.refund_id = 0
        self.subscriptions = self.payment_plans = 0

    def rows(self, customers: Iterable[_CustomerDraft]) -> Rows:
        tables: Rows = {table.name: [] for table, _ in _TABLES}
        for customer in customers:
            self._add(tables, customer)
        return tables

    def _add(self, tables: Rows, customer: _CustomerDraft) -> None:
        t = self.time
        brand, last4, exp_month, exp_year = customer.card
        on_file = customer.card_on_file
        tables["customers"].append(
            (customer.id, customer.name, customer.email, t(customer.created_at),
             _stripe_id("cus_", customer.id, 14), brand if on_file else None, last4 if on_file else None,
             exp_month if on_file else None, exp_year if on_file else None,
             _stripe_id("pm_", customer.id) if on_file else None)
        )  # fmt: skip
        tables["customer_search_terms"].extend(
            (term, customer.id) for term in customer_terms(customer.name, customer.email)
        )

        recurring = sorted(customer.recurring, key=lambda r: r.started_at)
        for r in recurring:
            self.recurring_id += 1
            r.id = self.recurring_id
        # What the customer placed: the one-off orders, and one order for each subscription or plan it started.
        placed: list[tuple[datetime, _OrderDraft | _RecurringDraft]] = sorted(
            [(o.created_at, o) for o in customer.orders] + [(r.started_at, r) for r in recurring],
            key=lambda placed: placed[0],
        )
        for _, what in placed:
            self.order_id += 1
            what.order_id = self.order_id
        for _, what in placed:
            if isinstance(what, _RecurringDraft):
                self._add_recurring(tables, customer, what)
            else:
                self._add_one_off(tables, customer, what)

    def _order_row(
        self,
        tables: Rows,
        customer: _CustomerDraft,
        order_id: int,
        created_at: datetime,
        currency: str,
        source: str,
        lines: list[tuple[str, int, int]],
        charges: list[_OrderDraft],
        recurring_id: int | None = None,
    ) -> None:
        """An order's row and lines; its totals add up the charges that paid it."""
        line1, line2, city, state, postal_code, country = customer.address
        total = sum(charge.total for charge in charges)
        refunded = sum(refund[0] for charge in charges for refund in charge.refunds)
        tables["orders"].append(
            (order_id, str(100_000 + order_id), customer.id, self.time(created_at), currency, total, refunded,
             _order_status(refunded, total), source, recurring_id, customer.name if charges else None,
             line1 if charges else None, line2 if charges else None, city if charges else None,
             state if charges else None, postal_code if charges else None, country if charges else None)
        )  # fmt: skip
        for position, (description, quantity, unit_amount) in enumerate(lines):
            tables["order_lines"].append((order_id, position, description, quantity, unit_amount))

    def _payment_row(
        self,
        tables: Rows,
        customer: _CustomerDraft,
        order_id: int,
        recurring_id: int | None,
        kind: str,
        due_at: datetime,
        amount: int,
        currency: str,
        status: str,
        charge: _OrderDraft | None,
        *,
        failure_reason: str | None = None,
        failed_at: datetime | None = None,
        invoiced: bool = False,
    ) -> None:
        """A payment's row, and the refunds of the charge that paid it."""
        t = self.time
        self.payment_id += 1
        payment_id = self.payment_id
        brand, last4, _, _ = customer.card
        refunded = 0
        for refunded_amount, at, reason, note, requested_by in charge.refunds if charge else []:
            self.refund_id += 1
            refunded += refunded_amount
            tables["refunds"].append(
                (self.refund_id, order_id, payment_id, refunded_amount, currency, reason, note,
                 _stripe_id("re_", self.refund_id), requested_by, t(at))
            )  # fmt: skip
        paid = charge is not None
        tables["payments"].append(
            (payment_id, order_id, recurring_id, kind, t(due_at), t(charge.created_at) if charge else None,
             charge.total if charge else amount, currency, status, failure_reason, t(failed_at),
             _stripe_id("in_", payment_id) if invoiced else None,
             _stripe_id("pi_", payment_id) if paid else None, _stripe_id("ch_", payment_id) if paid else None,
             refunded, 0, brand if paid else None, last4 if paid else None)
        )  # fmt: skip

    def _add_one_off(self, tables: Rows, customer: _CustomerDraft, order: _OrderDraft) -> None:
        self._order_row(
            tables,
            customer,
            order.order_id,
            order.created_at,
            order.currency,
            order.source,
            order.lines,
            [order],
        )
        self._payment_row(
            tables, customer, order.order_id, None, ONE_OFF, order.created_at, order.total, order.currency,
            PAID, order,
        )  # fmt: skip

    def _add_recurring(self, tables: Rows, customer: _CustomerDraft, r: _RecurringDraft) -> None:
        t = self.time
        offer = r.offer
        paid = sum(p.status == PAID for p in r.payments)
        if offer.installments:
            self.payment_plans += 1
        else:
            self.subscriptions += 1
        tables["recurring"].append(
            (r.id, offer.kind, customer.id, offer.product.name, r.amount, r.currency, offer.interval,
             offer.interval_count, r.status, t(r.started_at), t(r.canceled_at), r.cancel_at_period_end,
             t(r.current_period_end), r.payments_paused, t(r.paused_until), t(r.next_bill_at),
             _stripe_id("sub_", r.id), offer.installments, paid if offer.installments else None)
        )  # fmt: skip
        source = PAYMENT_PLAN_ORDER if offer.installments else SUBSCRIPTION_ORDER
        charges = [p.order for p in r.payments if p.order is not None]
        self._order_row(
            tables, customer, r.order_id, r.started_at, r.currency, source,
            [(offer.product.name, 1, r.amount)], charges, r.id,
        )  # fmt: skip
        again = INSTALMENT_PAYMENT if offer.installments else RENEWAL_PAYMENT
        for index, p in enumerate(r.payments):
            self._payment_row(
                tables, customer, r.order_id, r.id, INITIAL_PAYMENT if index == 0 else again, p.due_at,
                r.amount, r.currency, p.status, p.order, failure_reason=p.failure_reason,
                failed_at=p.failed_at, invoiced=True,
            )  # fmt: skip


def _order_status(refunded: int, total: int) -> str:
    if total == 0:
        return OrderStatus.UNPAID.value
    if refunded == 0:
        return OrderStatus.PAID.value
    if refunded >= total:
        return OrderStatus.REFUNDED.value
    return OrderStatus.PARTIALLY_REFUNDED.value


# --- Writing -------------------------------------------------------------------------------------------------


class _SQLiteWriter:
    """executemany on the sqlite3 connection; timestamps in the text format SQLAlchemy stores and reads back."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.driver = connection.connection.driver_connection
        quote = connection.dialect.identifier_preparer.quote
        self.statements = {
            table.name: f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "
            f"VALUES ({', '.join('?' * len(columns))})"
            for table, columns in _TABLES
        }

    @staticmethod
    def encode_time(moment: datetime | None) -> str | None:
        # "2026-11-01 00:00:00.000000+00:00" without the offset: always UTC.
        return None if moment is None else moment.isoformat(" ", "microseconds")[:26]

    def __enter__(self) -> _SQLiteWriter:
        # Losing a seed to a power cut is harmless; waiting for the disk a hundred times is not.
        self.connection.exec_driver_sql("PRAGMA synchronous=OFF")
        self.connection.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB
        self.connection.commit()
        return self

    def __exit__(self, *_exc) -> None:
        self.connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
        self.connection.exec_driver_sql("PRAGMA cache_size=-2000")
        self.connection.commit()

    def write(self, batch: Rows) -> None:
        with self.connection.begin():
            for table, _ in _TABLES:
                rows = batch[table.name]
                if rows:
                    self.driver.executemany(self.statements[table.name], rows)

    def finish(self) -> None:
        """Nothing to do: SQLite plans well enough without statistics."""


class _PostgresWriter:
    """COPY through psycopg; timestamps stay aware datetimes for psycopg to send."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.driver = connection.connection.driver_connection
        quote = connection.dialect.identifier_preparer.quote
        self.statements = {
            table.name: f"COPY {quote(table.name)} ({', '.join(map(quote, columns))}) FROM STDIN"
            for table, columns in _TABLES
        }

    @staticmethod
    def encode_time(moment: datetime | None) -> datetime | None:
        return moment

    def __enter__(self) -> _PostgresWriter:
        return self

    def __exit__(self, *_exc) -> None:
        pass

    def write(self, batch: Rows) -> None:
        with self.connection.begin():
            self.connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            with self.driver.cursor() as cursor:
                for table, _ in _TABLES:
                    rows = batch[table.name]
                    if rows:
                        with cursor.copy(self.statements[table.name]) as copy:
                            for row in rows:
                                copy.write_row(row)

    def finish(self) -> None:
        """Move each id sequence past the ids written here (COPY does not), then gather fresh statistics so
        the planner knows the tables are no longer empty."""
        with self.connection.begin():
            for table in (Customer, Recurring, Order, Payment, Refund):
                name = table.__tablename__
                self.connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), COALESCE(MAX(id), 0) + 1, false) "
                    f"FROM {name}"
                )
        # VACUUM as well: it marks the freshly copied pages all-visible, which index-only scans (search) need.
        autocommit = self.connection.execution_options(isolation_level="AUTOCOMMIT")
        autocommit.exec_driver_sql("VACUUM ANALYZE")


def _writer_for(connection: Connection) -> _SQLiteWriter | _PostgresWriter:
    name = connection.dialect.name
    if name == "sqlite":
        return _SQLiteWriter(connection)
    if name == "postgresql":
        return _PostgresWriter(connection)
    raise ValueError(f"seeding supports SQLite and PostgreSQL, not {name}")


# --- Seeding -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BigCustomer:
    customer_id: int
    orders: int


def _batches(customers: int, big_customer_orders: int) -> list[range | _BigCustomer]:
    """Jane Doe and customers 2..N in batches of ids, then the big customer if asked for."""
    batches: list[range | _BigCustomer] = [
        range(start, min(start + BATCH_SIZE, customers + 1)) for start in range(1, customers + 1, BATCH_SIZE)
    ]
    if big_customer_orders > 0:
        batches.append(_BigCustomer(customers + 1, big_customer_orders))
    return batches


def _generate(batch: range | _BigCustomer, maker: _RowMaker, now: datetime) -> tuple[Rows, _RowMaker]:
    """The rows of one batch, and the row maker with its numbering moved on (it may run in another process)."""
    if isinstance(batch, _BigCustomer):
        return maker.rows([_whale(batch.customer_id, batch.orders, now)]), maker
    return maker.rows(_jane_doe(now) if i == 1 else _random_customer(i, now) for i in batch), maker


def _generator(batches: int) -> Executor:
    """Where batches are generated: in a second process, so generating and writing use two cores.

    The process is spawned, not forked, so it shares no database connection or lock with this one; as with
    any spawned process, a script that seeds must guard its entry point with `if __name__ == "__main__"`.
    A single batch has nothing to overlap with and is generated on a thread, which starts faster.
    """
    if batches == 1:
        return ThreadPoolExecutor(max_workers=1)
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _write_catalogue(db: Database) -> None:
    """The products the merchant sells, in every currency, for the New order form."""
    products = {p.name: p for p in (*_CHECKOUT_PRODUCTS, *_ADD_ONS, *_INTERNAL_CHARGES)}
    with db.session() as session:
        session.execute(
            insert(Product),
            [
                {"name": name, "unit_amount": amount, "currency": currency, "active": True}
                for name, product in sorted(products.items())
                for currency, amount in product.prices.items()
            ],
        )


def seed(
    db: Database,
    customers: int,
    *,
    big_customer_orders: int = 0,
    progress: Callable[[int, int], None] | None = None,
    today: date | None = None,
) -> SeedSummary:
    """Fill an empty, migrated database with `customers` demo customers (and a big one if asked for), as of
    `today` (by default today in UTC)."""
    if customers < 1:
        raise ValueError("seed at least one customer (customer 1 is Jane Doe)")
    if big_customer_orders < 0:
        raise ValueError("big_customer_orders cannot be negative")
    started = time.perf_counter()
    now = reference_time(today or datetime.now(UTC).date())
    batches = _batches(customers, big_customer_orders)
    total = customers + (1 if big_customer_orders else 0)
    counts = dict.fromkeys(("customers", "orders", "payments", "refunds"), 0)
    with db.engine.connect() as connection:
        if connection.execute(select(Customer.id).limit(1)).first() is not None:
            raise ValueError("the database already has customers: seed only an empty database")
        connection.rollback()
        with _writer_for(connection) as writer, _generator(len(batches)) as generator:
            maker = _RowMaker(writer.encode_time)
            pending = generator.submit(_generate, batches[0], maker, now)
            for following in [*batches[1:], None]:
                rows, maker = pending.result()
                if following is not None:
                    pending = generator.submit(
                        _generate, following, maker, now
                    )  # while this batch is written
                writer.write(rows)
                for table in counts:
                    counts[table] += len(rows[table])
                if progress is not None:
                    progress(counts["customers"], total)
            writer.finish()
    _write_catalogue(db)
    _add_disputes(db, now)
    return SeedSummary(
        customers=counts["customers"],
        orders=counts["orders"],
        subscriptions=maker.subscriptions,
        payment_plans=maker.payment_plans,
        payments=counts["payments"],
        refunds=counts["refunds"],
        seconds=time.perf_counter() - started,
    )


# Two disputes among the random customers (never Jane, whose demo numbers the shell's script reads, nor Zoë): one
# still awaiting the merchant's evidence, one lost, which takes its amount off that customer's lifetime value.
_DISPUTED_FROM = 2


def _add_disputes(db: Database, now: datetime) -> None:
    """Through the order book, the one way disputes are written: the newest unrefunded one-off payment of the
    first random customers who have one."""
    taken: set[int] = set()
    with db.session() as session:
        for status, opened, due, reason in (
            ("needs_response", now - timedelta(days=2), now + timedelta(days=5), "product_not_received"),
            ("lost", now - timedelta(days=75), None, "fraudulent"),
        ):
            payment = session.scalar(
                select(Payment)
                .join(Order, Order.id == Payment.order_id)
                .where(
                    Order.customer_id >= _DISPUTED_FROM,
                    Order.customer_id != ZOE,
                    Order.customer_id.not_in(taken or {0}),
                    Payment.kind == ONE_OFF,
                    Payment.status == PAID,
                    Payment.amount_refunded == 0,
                    Payment.paid_at < opened,
                )
                .order_by(Order.customer_id, Payment.paid_at.desc(), Payment.id.desc())
                .limit(1)
            )
            if payment is None:
                continue  # a demo too small to have one
            order = session.get(Order, payment.order_id)
            assert order is not None
            taken.add(order.customer_id)
            order_book.record_dispute(
                session,
                payment,
                order_book.StripeDispute(
                    stripe_dispute_id=_stripe_id("du_", payment.id),
                    amount=payment.amount,
                    currency=payment.currency,
                    status=status,
                    reason=reason,
                    due_by=due,
                    created_at=opened,
                    lost=payment.amount if status == "lost" else 0,
                ),
            )
