"""The terminal renderer: Block Kit JSON in, text and numbered clickables out."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from devkit.terminal import Clickable, render_message, render_mrkdwn, render_view

PARIS = ZoneInfo("Europe/Paris")
# 2026-01-31 13:05:09 UTC, a Saturday: 14:05:09 in Paris.
TS = 1769864709


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text, "emoji": True}


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def button(label: str, action_id: str, **extra: object) -> dict:
    return {"type": "button", "text": plain(label), "action_id": action_id, **extra}


def option(label: str, value: str) -> dict:
    return {"text": plain(label), "value": value}


# mrkdwn


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("*Jane* paid", "Jane paid"),
        ("_late_ and ~gone~", "late and gone"),
        ("run `a_b *c*` now", "run a_b *c* now"),
        ("```line 1\nline_2```", "line 1\nline_2"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("*_both_*", "both"),
        ("<https://x.test/a_b_c|the order>", "the order (https://x.test/a_b_c)"),
        ("<https://x.test>", "https://x.test"),
        ("<https://x.test|https://x.test>", "https://x.test"),
        ("<mailto:a@b.c|a@b.c>", "a@b.c"),
        ("<mailto:a@b.c|Email Jane>", "Email Jane (a@b.c)"),
        ("*<https://x.test|Open>*", "Open (https://x.test)"),
        ("<@U123> and <@U9|jane>", "@U123 and @jane"),
        ("<#C123|general> <#C9>", "#general #C9"),
        ("<!here> <!channel> <!subteam^S1|@support>", "@here @channel @support"),
        ("Tom &amp; Jerry &lt;3 &gt; &amp;lt;", "Tom & Jerry <3 > &lt;"),
        (":warning: :white_check_mark: :x: :credit_card: :lock:", "⚠️ ✅ ❌ 💳 🔒"),
        (":pause_button: :arrows_counterclockwise: :large_green_circle:", "⏸️ 🔄 🟢"),
        (":not_an_emoji: at 12:30:45", ":not_an_emoji: at 12:30:45"),
        ("`:x:`", ":x:"),
    ],
)
def test_mrkdwn(source: str, expected: str) -> None:
    assert render_mrkdwn(source) == expected


def test_mrkdwn_bold_is_ansi_only_with_color() -> None:
    assert render_mrkdwn("*Jane* _x_", color=True) == "\033[1mJane\033[0m x"
    assert render_mrkdwn("*Jane*", color=False) == "Jane"


@pytest.mark.parametrize(
    ("template", "paris", "utc"),
    [
        ("{date_num}", "2026-01-31", "2026-01-31"),
        ("{date_slash}", "01/31/2026", "01/31/2026"),
        ("{date_short}", "Jan 31, 2026", "Jan 31, 2026"),
        ("{date_short_pretty} at {time}", "Jan 31, 2026 at 14:05", "Jan 31, 2026 at 13:05"),
        ("{date}", "January 31, 2026", "January 31, 2026"),
        ("{date_long}", "Saturday, January 31, 2026", "Saturday, January 31, 2026"),
        ("{date_long_pretty}", "Saturday, January 31, 2026", "Saturday, January 31, 2026"),
        ("due {time_secs} sharp", "due 14:05:09 sharp", "due 13:05:09 sharp"),
    ],
)
def test_date_tokens(template: str, paris: str, utc: str) -> None:
    token = f"Paid <!date^{TS}^{template}|fallback>."
    assert render_mrkdwn(token, tz=PARIS) == f"Paid {paris}."
    assert render_mrkdwn(token, tz=UTC) == f"Paid {utc}."


def test_date_token_in_another_zone_can_change_the_day() -> None:
    late = 1769900400  # 2026-01-31 23:00 UTC
    assert render_mrkdwn(f"<!date^{late}^{{date_num}} {{time}}|x>", tz=UTC) == "2026-01-31 23:00"
    assert render_mrkdwn(f"<!date^{late}^{{date_num}} {{time}}|x>", tz=PARIS) == "2026-02-01 00:00"


def test_date_token_link_is_ignored_and_fallback_used_when_unreadable() -> None:
    assert render_mrkdwn(f"<!date^{TS}^{{date_num}}^https://x.test|Jan 31>", tz=UTC) == "2026-01-31"
    assert render_mrkdwn(f"<!date^{TS}^{{ago}}|a while &amp; more>", tz=UTC) == "a while & more"
    assert render_mrkdwn("<!date^soon^{date_num}|whenever>", tz=UTC) == "whenever"


def test_date_token_defaults_to_local_time_zone() -> None:
    assert render_mrkdwn(f"<!date^{TS}^{{date_num}}|x>") in {"2026-01-31", "2026-02-01"}


# Blocks


def test_header_section_divider_and_context() -> None:
    screen = render_message(
        [
            {"type": "header", "text": plain("Jane Doe")},
            {"type": "section", "text": mrkdwn("*Email* jane@example.com")},
            {"type": "divider"},
            {
                "type": "context",
                "elements": [
                    {"type": "image", "image_url": "https://x.test/visa.png", "alt_text": "Visa"},
                    mrkdwn("•••• 4242"),
                    plain("*as typed*"),
                ],
            },
        ],
        width=40,
    )
    assert screen.text.split("\n") == [
        "Jane Doe",
        "═" * 8,
        "",
        "Email jane@example.com",
        "",
        "─" * 40,
        "",
        "[Visa] · •••• 4242 · *as typed*",
    ]
    assert screen.clickables == []


def test_header_is_bold_with_color() -> None:
    text = render_message([{"type": "header", "text": plain("Jane")}], color=True).text
    assert text == "\033[1mJane\033[0m\n════"


def test_fields_in_two_aligned_columns() -> None:
    fields = [mrkdwn("*Orders*\n12"), mrkdwn("*Lifetime value*\n$1,234.00"), mrkdwn("*Plans*\n1")]
    text = render_message([{"type": "section", "fields": fields}], width=40).text
    # Columns of (40 - 3) // 2 = 18, three spaces apart.
    assert text.split("\n") == [
        "Orders" + " " * 15 + "Lifetime value",
        "12" + " " * 19 + "$1,234.00",
        "",
        "Plans",
        "1",
    ]


def test_fields_align_despite_color_codes() -> None:
    fields = [mrkdwn("*Orders*"), mrkdwn("*Plans*")]
    text = render_message([{"type": "section", "fields": fields}], width=40, color=True).text
    assert text == "\033[1mOrders\033[0m" + " " * 15 + "\033[1mPlans\033[0m"


def test_long_lines_wrap_at_width_and_keep_indentation() -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta"
    screen = render_message([{"type": "section", "text": mrkdwn(f"{words}\n    {words}")}], width=24)
    assert screen.text.split("\n") == [
        "alpha beta gamma delta",
        "epsilon zeta eta theta",
        "    alpha beta gamma",
        "    delta epsilon zeta",
        "    eta theta",
    ]


def test_long_words_are_not_broken() -> None:
    url = "https://example.com/" + "x" * 40
    lines = render_message([{"type": "section", "text": mrkdwn(f"see <{url}>")}], width=30).text.split("\n")
    assert lines == ["see", url]


def test_unknown_block_shows_its_type() -> None:
    screen = render_message([{"type": "video", "title": plain("Demo")}, {"no_type": True}])
    assert screen.text == "[video]\n\n[unknown]"


def test_empty_blocks_show_fallback_text() -> None:
    screen = render_message([], fallback_text="*No customer* matches &lt;jane&gt; :x:")
    assert screen.text == "No customer matches <jane> ❌"
    assert screen.clickables == []


def test_image_block_and_accessory() -> None:
    screen = render_message(
        [
            {
                "type": "image",
                "image_url": "https://x.test/a.png",
                "alt_text": "chart",
                "title": plain("Sales"),
            },
            {
                "type": "section",
                "text": mrkdwn("Jane"),
                "accessory": {"type": "image", "image_url": "https://x.test/j.png", "alt_text": "avatar"},
            },
        ]
    )
    assert screen.text == "Sales\n[image: chart]\n\nJane  [image: avatar]"
    assert screen.clickables == []


def test_rich_text() -> None:
    block = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Hi "},
                    {"type": "user", "user_id": "U1"},
                    {"type": "text", "text": ", see "},
                    {"type": "link", "url": "https://x.test", "text": "this"},
                    {"type": "text", "text": " now", "style": {"bold": True}},
                    {"type": "emoji", "name": "tada", "unicode": "1f389"},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "ordered",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]},
                    {"type": "rich_text_section", "elements": [{"type": "channel", "channel_id": "C1"}]},
                ],
            },
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": "quoted"}]},
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "a  b\nc"}]},
            {
                "type": "rich_text_section",
                "elements": [{"type": "date", "timestamp": TS, "format": "{date_num}", "fallback": "x"}],
            },
        ],
    }
    text = render_message([block], tz=PARIS).text
    assert text == "Hi @U1, see this (https://x.test) now🎉\n1. one\n2. #C1\n> quoted\na  b\nc\n2026-01-31"


# Clickables


def test_buttons_are_numbered_in_reading_order_across_blocks() -> None:
    screen = render_message(
        [
            {
                "type": "section",
                "block_id": "sub_1",
                "text": mrkdwn("*Gold* · $20.00/month"),
                "accessory": button("Open", "subscription_open", value="sub_1"),
            },
            {
                "type": "actions",
                "block_id": "toggle",
                "elements": [
                    button("Active", "subscriptions_active", style="primary"),
                    button("All", "subscriptions_all"),
                ],
            },
            {"type": "actions", "elements": [button("Next page", "orders_next", value="2")]},
        ]
    )
    assert screen.text == "Gold · $20.00/month  [1 Open]\n\n[2 Active*] [3 All]\n\n[4 Next page]"
    assert [(c.number, c.label, c.context) for c in screen.clickables] == [
        (1, "Open", "Gold · $20.00/month"),
        (2, "Active", "Gold · $20.00/month"),
        (3, "All", "Gold · $20.00/month"),
        (4, "Next page", "Gold · $20.00/month"),
    ]
    assert [c.action["block_id"] for c in screen.clickables] == ["sub_1", "toggle", "toggle", "b2"]


def test_button_action_has_slack_payload_shape() -> None:
    confirm = {
        "title": plain("Refund?"),
        "confirm": plain("Yes"),
        "deny": plain("No"),
        "text": mrkdwn("Sure"),
    }
    screen = render_message(
        [
            {
                "type": "actions",
                "elements": [button("Refund", "refund", value="ord_1", style="danger", confirm=confirm)],
            }
        ]
    )
    (clickable,) = screen.clickables
    action = dict(clickable.action)
    action_ts = action.pop("action_ts")
    assert action == {
        "type": "button",
        "action_id": "refund",
        "block_id": "b0",
        "value": "ord_1",
        "text": {"type": "plain_text", "text": "Refund", "emoji": True},
        "style": "danger",
    }
    assert isinstance(action_ts, str)
    assert float(action_ts) > 0
    assert clickable.confirm == confirm
    assert screen.text == "[1 Refund!]"


def test_button_without_value_or_style_omits_them() -> None:
    (clickable,) = render_message([{"type": "actions", "elements": [button("All", "all")]}]).clickables
    assert set(clickable.action) == {"type", "action_id", "block_id", "text", "action_ts"}
    assert clickable.confirm is None


def test_button_styles_with_color() -> None:
    elements = [
        button("Active", "a", style="primary"),
        button("All", "b"),
        button("Refund", "c", style="danger"),
    ]
    text = render_message([{"type": "actions", "elements": elements}], color=True).text
    assert text == "\033[1m[1 Active]\033[0m [2 All] \033[31m[3 Refund]\033[0m"


def test_link_button_shows_its_url() -> None:
    elements = [button("Stripe", "stripe", url="https://dashboard.stripe.com/customers/cus_1")]
    text = render_message([{"type": "actions", "elements": elements}]).text
    assert text == "[1 Stripe (https://dashboard.stripe.com/customers/cus_1)]"


def test_overflow_options_are_clickables_with_overflow_payload() -> None:
    refund, cancel = option("Refund", "refund:ord_1"), option("Cancel", "cancel:sub_1")
    screen = render_message(
        [
            {"type": "actions", "elements": [button("Open", "open")]},
            {
                "type": "section",
                "block_id": "ord_1",
                "text": mrkdwn("Order #1001"),
                "accessory": {"type": "overflow", "action_id": "order_menu", "options": [refund, cancel]},
            },
        ]
    )
    assert screen.text == "[1 Open]\n\nOrder #1001  More: [2 Refund] [3 Cancel]"
    _, first, second = screen.clickables
    assert (first.number, first.label, first.context) == (2, "More: Refund", "Order #1001")
    assert second.label == "More: Cancel"
    assert {k: v for k, v in first.action.items() if k != "action_ts"} == {
        "type": "overflow",
        "action_id": "order_menu",
        "block_id": "ord_1",
        "selected_option": refund,
    }
    assert second.action["selected_option"] == cancel


def test_static_select_options_are_clickables_with_select_payload() -> None:
    active, paused = option("Active", "active"), option("Paused", "paused")
    select = {
        "type": "static_select",
        "action_id": "plan_status",
        "placeholder": plain("Status"),
        "initial_option": paused,
        "options": [active, paused],
    }
    screen = render_message([{"type": "actions", "block_id": "plan_1", "elements": [select]}])
    assert screen.text == "Status: [1 Active] [2 Paused*]"
    first, _ = screen.clickables
    assert first.label == "Status: Active"
    assert {k: v for k, v in first.action.items() if k != "action_ts"} == {
        "type": "static_select",
        "action_id": "plan_status",
        "block_id": "plan_1",
        "selected_option": active,
        "placeholder": plain("Status"),
    }


def test_select_option_groups_are_flattened() -> None:
    select = {
        "type": "static_select",
        "action_id": "pick",
        "option_groups": [
            {"label": plain("Subscriptions"), "options": [option("Gold", "sub_1")]},
            {"label": plain("Plans"), "options": [option("Course", "plan_1")]},
        ],
    }
    screen = render_message([{"type": "actions", "elements": [select]}])
    assert [c.label for c in screen.clickables] == ["Select: Gold", "Select: Course"]


def test_datepicker_in_message_is_shown_not_clickable() -> None:
    elements = [
        {"type": "datepicker", "action_id": "d1", "initial_date": "2026-03-01"},
        {"type": "datepicker", "action_id": "d2", "placeholder": plain("Pause until")},
        button("Pause", "pause"),
    ]
    screen = render_message([{"type": "actions", "elements": elements}])
    assert screen.text == "[date: 2026-03-01] [date (Pause until)] [1 Pause]"
    assert [c.label for c in screen.clickables] == ["Pause"]


def test_accessory_goes_below_when_it_does_not_fit_beside() -> None:
    block = {
        "type": "section",
        "text": mrkdwn("A rather long line of text"),
        "accessory": button("Open", "o"),
    }
    assert render_message([block], width=30).text == "A rather long line of text\n[1 Open]"


def test_actions_wrap_between_buttons_never_inside() -> None:
    elements = [button(f"Page {n}", f"p{n}") for n in range(1, 5)]
    text = render_message([{"type": "actions", "elements": elements}], width=22).text
    assert text == "[1 Page 1] [2 Page 2]\n[3 Page 3] [4 Page 4]"


def test_clickable_is_frozen() -> None:
    clickable = render_message([{"type": "actions", "elements": [button("A", "a")]}]).clickables[0]
    assert isinstance(clickable, Clickable)
    with pytest.raises(AttributeError):
        clickable.number = 2  # type: ignore[misc]


# Modals


def test_view_renders_inputs_and_submit_close_labels() -> None:
    view = {
        "type": "modal",
        "callback_id": "refund",
        "title": plain("Refund order #1001"),
        "submit": plain("Refund"),
        "close": plain("Cancel"),
        "blocks": [
            {"type": "section", "text": mrkdwn("Paid *$50.00* on <!date^1769864709^{date_short}|Jan 31>")},
            {
                "type": "input",
                "block_id": "amount",
                "optional": True,
                "label": plain("Amount"),
                "hint": plain("Leave empty to refund everything"),
                "element": {"type": "plain_text_input", "action_id": "a", "placeholder": plain("e.g. 12.50")},
            },
            {
                "type": "input",
                "label": plain("Reason"),
                "element": {
                    "type": "static_select",
                    "action_id": "r",
                    "initial_option": option("Duplicate", "duplicate"),
                    "options": [option("Duplicate", "duplicate"), option("Fraudulent", "fraudulent")],
                },
            },
            {
                "type": "input",
                "label": plain("When"),
                "element": {
                    "type": "radio_buttons",
                    "action_id": "w",
                    "initial_option": option("Now", "now"),
                    "options": [option("Now", "now"), option("At period end", "end")],
                },
            },
            {
                "type": "input",
                "label": plain("Note"),
                "element": {"type": "plain_text_input", "multiline": True},
            },
            {
                "type": "input",
                "label": plain("Until"),
                "element": {"type": "datepicker", "initial_date": "2026-03-01"},
            },
            {"type": "actions", "elements": [button("Full amount", "full_amount")]},
        ],
    }
    screen = render_view(view, tz=UTC)
    assert screen.text == (
        "Refund order #1001\n"
        + "═" * 18
        + "\n\nPaid $50.00 on Jan 31, 2026"
        + "\n\nAmount (optional): [text input (e.g. 12.50)]\n  Leave empty to refund everything"
        + "\n\nReason: [select: Duplicate* / Fraudulent]"
        + "\n\nWhen: (•) Now  ( ) At period end"
        + "\n\nNote: [multi-line text input]"
        + "\n\nUntil: [date: 2026-03-01]"
        + "\n\n[1 Full amount]"
        + "\n\n[Submit: Refund] [Close: Cancel]"
    )
    (clickable,) = screen.clickables
    assert clickable.action["block_id"] == "b6"
    assert clickable.context == "Paid $50.00 on Jan 31, 2026"


def test_view_without_submit_shows_default_close() -> None:
    screen = render_view({"type": "modal", "title": plain("Order #1001"), "blocks": []})
    assert screen.text == "Order #1001\n" + "═" * 11 + "\n\n[Close: Cancel]"
    assert screen.clickables == []
