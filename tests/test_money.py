"""Money is exact: formatting per currency and parsing typed amounts, never through floats."""

from __future__ import annotations

import pytest

from bot.money import InvalidAmount, Money, format_money, parse_amount


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (123456, "usd", "$1,234.56"),
        (5, "usd", "$0.05"),
        (3000, "jpy", "¥3,000"),
        (12345, "kwd", "KWD\u00a012.345"),
        (-500, "eur", "-€5.00"),
        (99, "gbp", "£0.99"),
        (10**17 + 1, "usd", "$1,000,000,000,000,000.01"),
    ],
)
def test_formatting_uses_the_currency_own_decimals(amount, currency, shown):
    assert format_money(amount, currency) == shown


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "usd", 1250),
        ("1,234.5", "usd", 123450),
        ("$5", "usd", 500),
        ("3000", "jpy", 3000),
        ("1.234", "kwd", 1234),
        ("0.1", "usd", 10),
        ("  7 ", "eur", 700),
    ],
)
def test_parsing_is_exact(text, currency, minor):
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [
        ("12.505", "usd", "2 decimal places"),
        ("-1", "usd", "positive"),
        ("abc", "usd", "not an amount"),
        ("1.5", "jpy", "whole amount"),
        ("1e3", "usd", "not an amount"),
        ("١٢", "usd", "not an amount"),
        ("１２.５０", "usd", "not an amount"),
        ("²", "usd", "not an amount"),
        ("", "usd", "not an amount"),
        ("NaN", "usd", "not an amount"),
    ],
)
def test_parsing_refuses_what_is_not_an_amount(text, currency, why):
    with pytest.raises(InvalidAmount, match=why):
        parse_amount(text, currency)


def test_money_refuses_floats():
    with pytest.raises(TypeError):
        Money(12.5, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "currency", ["usd", "eur", "gbp", "jpy", "krw", "kwd", "bhd", "chf", "inr", "sek", "xof"]
)
def test_the_fast_formatter_says_exactly_what_babel_says(currency):
    from bot.money import format_money, format_money_with_babel

    for amount in (0, 1, 9, 10, 99, 100, 101, 999, 1000, 123456, 100000000, 123456789012, -1, -250, -123456):
        assert format_money(amount, currency) == format_money_with_babel(amount, currency), (amount, currency)
