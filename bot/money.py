"""Money: integer amounts in a currency's minor unit, formatted and parsed exactly (never through floats)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import format_currency, get_currency_symbol

# Stripe's own lists: amounts in these currencies are sent to Stripe without (or with three) decimals.
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])

LOCALE = "en_US"


def exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has (Stripe's convention)."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


@dataclass(frozen=True, order=True)
class Money:
    amount: int  # in the currency's minor unit
    currency: str  # ISO 4217, lower case as Stripe sends it

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError(f"money amounts are integers in minor units, not {self.amount!r}")

    def format(self) -> str:
        return format_money(self.amount, self.currency)


def format_money(amount: int, currency: str) -> str:
    """'$1,234.56', '¥3,000', 'KWD 12.345': exact, with the currency's own number of decimals. Integer arithmetic
    on a per-currency style looked up once (Babel's formatter parses its pattern on every call); the result is
    what `format_money_with_babel` gives, which the tests check."""
    places, prefix = _style(currency.upper())
    whole, minor = divmod(abs(amount), 10**places)
    number = f"{whole:,}.{minor:0{places}d}" if places else f"{whole:,}"
    return f"{'-' if amount < 0 else ''}{prefix}{number}"


@lru_cache(maxsize=256)  # currencies are few; the bound only keeps odd data from growing it
def _style(code: str) -> tuple[int, str]:
    symbol = get_currency_symbol(code, locale=LOCALE)
    return exponent(code), symbol + (
        "\u00a0" if symbol[-1:].isalpha() else ""
    )  # "KWD 12.345", not "KWD12.345"


def format_money_with_babel(amount: int, currency: str) -> str:
    """The reference: Babel's currency formatting for LOCALE, with the currency's own decimals."""
    code = currency.upper()
    places = exponent(code)
    value = Decimal(amount).scaleb(-places)
    pattern = "¤#,##0" + ("." + "0" * places if places else "")
    text = format_currency(value, code, format=pattern, locale=LOCALE, currency_digits=False)
    symbol = get_currency_symbol(code, locale=LOCALE)
    if symbol[-1:].isalpha():
        text = text.replace(symbol, symbol + "\u00a0", 1)
    return text


class InvalidAmount(ValueError):
    """Text that is not a usable amount of money; the message says why, in words for the person typing."""


# ASCII digits only: \d alone would take other scripts' digits ("١٢"), which a person did not mean to type here.
_AMOUNT = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$|^\d+(\.\d+)?$|^\.\d+$", re.ASCII)


def parse_amount(text: str, currency: str) -> int:
    """'12.50' in usd -> 1250. Rejects negatives, too many decimals for the currency and anything not a number."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    symbol = get_currency_symbol(currency.upper(), locale=LOCALE)
    for prefix in (symbol, currency.upper(), currency.lower()):
        cleaned = cleaned.removeprefix(prefix)
    if cleaned.startswith("-"):
        raise InvalidAmount("Enter a positive amount.")
    if not _AMOUNT.match(cleaned):
        raise InvalidAmount(f"“{text.strip()[:40]}” is not an amount. Write it like 12.50.")
    try:
        value = Decimal(cleaned.replace(",", ""))
    except InvalidOperation as error:  # pragma: no cover - the pattern above admits only valid decimals
        raise InvalidAmount("Enter an amount like 12.50.") from error
    places = exponent(currency)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        if places == 0:
            raise InvalidAmount(f"{currency.upper()} has no decimal places; enter a whole amount.")
        raise InvalidAmount(f"{currency.upper()} has {places} decimal places at most.")
    return int(minor)
