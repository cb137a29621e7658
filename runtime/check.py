"""`customer-bot check`: the configuration tried against the database, Slack, Stripe and the CRMs, one line each.

Each check returns findings (✓ works, ✗ needs fixing, with what to do, – not checked or not configured, which is
fine); printing them is the last step. The database, Slack, Stripe and the CRMs are checked at the same time, each
within `Limits.part_seconds`, so a service that never answers costs a ✗ line, not a hung command. Secrets are
never printed: not the keys or tokens, nor the database password.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import stripe
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot.crm import CrmError, crms_from_settings
from bot.db import alembic_config, current_revision, make_engine
from bot.settings import Settings
from bot.stripe_gateway import API_VERSION
from bot.webhooks import HANDLED

logger = logging.getLogger("customer_bot.check")
_quiet = logging.getLogger("customer_bot.check.slack")
_quiet.propagate = False  # what goes wrong is one finding, not a log line as well
_quiet.addHandler(logging.NullHandler())

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"
WEBHOOK_PATH = "/stripe/webhook"  # where runtime.web takes Stripe's deliveries
PROBE_EMAIL = "customer-bot-check@example.invalid"  # looked up in each CRM; the answer does not matter
PROBE_ID = "customer_bot_check"  # an id no Stripe object has: writes on it are refused, harmlessly

# Every line starts with ✓ or ✗ (the stable interface): an item left unchecked or not configured breaks
# nothing, so it is a ✓ whose line says what was not checked and why.
OK, FAILED, SKIPPED = "✓", "✗", "✓"


@dataclass(frozen=True)
class Finding:
    mark: str  # OK, FAILED or SKIPPED
    line: str
    todo: str | None = None  # what to do about it (always given for FAILED)


def ok(line: str) -> Finding:
    return Finding(OK, line)


def failed(line: str, todo: str) -> Finding:
    return Finding(FAILED, line, todo)


def skipped(line: str, todo: str | None = None) -> Finding:
    return Finding(SKIPPED, line, todo)


@dataclass(frozen=True)
class Limits:
    call_seconds: float = 5.0  # one request to Slack, Stripe, a CRM or the database
    part_seconds: float = 10.0  # everything about one of them


# --- the whole check ----------------------------------------------------------------------------------------------


def run(settings: Settings, out: TextIO | None = None) -> int:
    """The `check` command: print the findings; 0 when nothing needs fixing, 1 otherwise."""
    return report(check_everything(settings, public_url=settings.public_url), out or sys.stdout)


def check_everything(
    settings: Settings,
    *,
    public_url: str | None = None,
    manifest: Path = MANIFEST,
    limits: Limits = Limits(),
) -> list[Finding]:
    parts: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("Database", lambda: check_database(settings)),
        ("Slack", lambda: check_slack(settings, manifest, limits)),
        ("Stripe", lambda: check_stripe(settings, public_url, limits)),
        ("CRMs", lambda: check_crms(settings)),
    ]
    return _each_within(parts, limits.part_seconds)


def report(findings: Sequence[Finding], out: TextIO) -> int:
    for finding in findings:
        print(f"{finding.mark} {finding.line}", file=out)
        if finding.todo:
            print(f"    → {finding.todo}", file=out)
    problems = sum(f.mark == FAILED for f in findings)
    if problems:
        print(f"\n{problems} to fix (✗ above); run `customer-bot check` again afterwards.", file=out)
        return 1
    print("\nEverything the bot needs works.", file=out)
    return 0


def _each_within(parts: list[tuple[str, Callable[[], list[Finding]]]], seconds: float) -> list[Finding]:
    """Run the parts side by side, each in a daemon thread: one still waiting at the deadline is left behind (it
    cannot keep the process alive) and reported as not answering."""
    results: dict[str, list[Finding]] = {}

    def work(name: str, part: Callable[[], list[Finding]]) -> None:
        try:
            results[name] = part()
        except Exception as error:  # a check that breaks is a finding; the traceback goes to the log
            logger.exception("the %s check failed", name)
            results[name] = [
                failed(f"{name}: the check itself failed ({type(error).__name__})", "See the log.")
            ]

    threads = [
        threading.Thread(target=work, args=part, daemon=True, name=f"check-{part[0]}") for part in parts
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    findings: list[Finding] = []
    for (name, _), thread in zip(parts, threads, strict=True):
        thread.join(max(0.0, deadline - time.monotonic()))
        findings += results.get(name) or [
            failed(
                f"{name}: no answer within {seconds:g} s",
                f"Check that {name} can be reached from this machine, then run the check again.",
            )
        ]
    return findings


# --- database -----------------------------------------------------------------------------------------------------


def check_database(settings: Settings) -> list[Finding]:
    from alembic.script import ScriptDirectory

    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return [
            failed(
                "Database: DATABASE_URL is not a database URL",
                "Set it as postgresql://user:password@host:5432/name (or sqlite:///file.db).",
            )
        ]
    shown = url.render_as_string(hide_password=True)
    upgrade = "Run `customer-bot db upgrade` (the Procfile's release step does it on each deploy)."
    sqlite_file = url.database if url.get_backend_name() == "sqlite" else None
    if sqlite_file and sqlite_file != ":memory:" and not Path(sqlite_file).exists():
        # Connecting would create an empty file, and the check changes nothing.
        return [
            failed(
                f"Database {shown}: there is no such file",
                "Set DATABASE_URL to your database, or run `customer-bot db upgrade` to create this one.",
            )
        ]
    engine = make_engine(settings.database_url)
    try:
        current = current_revision(engine)
    except SQLAlchemyError as error:
        reason = (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[
            0
        ]
        return [
            failed(
                f"Database {shown} does not answer: {reason}",
                "Check DATABASE_URL and that the database server runs and lets this machine in.",
            )
        ]
    finally:
        engine.dispose()
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if current == head:
        return [ok(f"Database {shown}: answers, every migration applied")]
    if current is None:
        return [failed(f"Database {shown}: answers, but no migration is applied", upgrade)]
    if current in {script.revision for script in scripts.walk_revisions()}:
        return [failed(f"Database {shown}: answers, but migrations after {current} are not applied", upgrade)]
    return [
        failed(
            f"Database {shown}: at migration {current}, which this code does not know",
            "Newer code migrated it: deploy that code, or point DATABASE_URL at this deployment's database.",
        )
    ]


# --- Slack --------------------------------------------------------------------------------------------------------

_SLACK_TOKEN_TODO = "Copy the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & Permissions page into SLACK_BOT_TOKEN."


def manifest_scopes(manifest: Path) -> list[str] | None:
    """The bot scopes manifest.yml asks for (oauth_config → scopes → bot); None without the file. Read line by
    line: the bot has no YAML library, and the manifest is ours."""
    if not manifest.is_file():
        return None
    keys: list[tuple[int, str]] = []
    scopes: list[str] = []
    for raw in manifest.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("- "):
            if [key for _, key in keys] == ["oauth_config", "scopes", "bot"]:
                scopes.append(item[2:].strip().strip("'\""))
            continue
        depth = len(line) - len(line.lstrip())
        while keys and keys[-1][0] >= depth:
            keys.pop()
        keys.append((depth, item.split(":", 1)[0].strip()))
    return scopes


def check_slack(settings: Settings, manifest: Path, limits: Limits) -> list[Finding]:
    findings = [_request_verification(settings)]
    if not settings.slack_bot_token:
        return [failed("Slack: SLACK_BOT_TOKEN is not set", _SLACK_TOKEN_TODO), *findings]
    client = WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=int(max(1, limits.call_seconds)),
        logger=_quiet,
        retry_handlers=[],
    )
    try:
        answer = client.auth_test()
    except SlackApiError as refused:
        error = _slack_error(refused)
        return [
            failed(f"Slack refused SLACK_BOT_TOKEN ({error})", _SLACK_TOKEN_TODO),
            *findings,
            _not_checked(),
        ]
    except (SlackClientError, OSError, ValueError) as unreachable:
        reason = getattr(unreachable, "reason", None) or unreachable
        return [
            failed(
                f"Slack at {settings.slack_api_url} did not answer ({reason})",
                "Check this machine's connection to Slack (and SLACK_API_URL, if set).",
            ),
            *findings,
            _not_checked(),
        ]
    bot = answer.get("user") or "the bot"
    if not settings.slack_bot_token.startswith("xoxb-"):
        findings.insert(
            0, failed("Slack: SLACK_BOT_TOKEN works but is not a bot token (xoxb-…)", _SLACK_TOKEN_TODO)
        )
    else:
        findings.insert(0, ok(f"Slack: the token works, in workspace {answer.get('team')} as @{bot}"))
    granted = _granted_scopes(answer.headers)
    findings.append(_scopes(manifest_scopes(manifest), granted))
    findings.append(_channel(client, "ALERTS_CHANNEL", settings.alerts_channel, bot, required=True))
    findings.append(_channel(client, "AUDIT_CHANNEL", settings.audit_channel, bot, required=False))
    findings += _payment_admins(client, sorted(settings.payment_admins), granted)
    return findings


def _request_verification(settings: Settings) -> Finding:
    """How Slack's requests reach the bot: signed HTTP (`web`) or Socket Mode (`socket`); either will do."""
    ways = [
        f"{name} is set (for `customer-bot {command}`)"
        for name, value, command in (
            ("SLACK_SIGNING_SECRET", settings.slack_signing_secret, "web"),
            ("SLACK_APP_TOKEN", settings.slack_app_token, "socket"),
        )
        if value
    ]
    if ways:
        return ok("Slack: " + "; ".join(ways))
    return failed(
        "Slack: neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN is set, so Slack's requests cannot reach the bot",
        "Set SLACK_SIGNING_SECRET (Basic Information → App Credentials) for `customer-bot web`, or SLACK_APP_TOKEN "
        "(xapp-…, with connections:write) for `customer-bot socket`.",
    )


def _not_checked() -> Finding:
    return skipped("Slack scopes, channels and payment admins: not checked, as the token does not work")


def _slack_error(refused: SlackApiError) -> str:
    data = refused.response.data if isinstance(refused.response.data, dict) else {}
    return str(data.get("error") or f"HTTP {refused.response.status_code}")


def _granted_scopes(headers: Mapping[str, Any]) -> set[str] | None:
    """The scopes Slack says the token has (`x-oauth-scopes`, on every Web API answer); None when it does not say."""
    for name, value in headers.items():
        if name.lower() == "x-oauth-scopes":
            text = value[0] if isinstance(value, list) else value
            return {scope.strip() for scope in str(text).split(",") if scope.strip()}
    return None


def _scopes(needed: list[str] | None, granted: set[str] | None) -> Finding:
    if needed is None:
        return skipped("Slack scopes: not checked, as manifest.yml is not next to the code")
    if granted is None:
        return skipped("Slack scopes: not checked, as Slack did not say which scopes the token has")
    missing = [scope for scope in needed if scope not in granted]
    if missing:
        return failed(
            f"Slack: the token lacks scopes the app needs: {', '.join(missing)}",
            "Add them under OAuth & Permissions → Scopes (or update the app from manifest.yml), then reinstall "
            "the app to the workspace.",
        )
    return ok(f"Slack: the app has every scope manifest.yml asks for ({', '.join(needed)})")


def _channel(client: WebClient, variable: str, channel: str | None, bot: str, *, required: bool) -> Finding:
    """The bot is in the channel: reading its latest message is what the alerts job does, with the scopes the app
    has (conversations.info would need channels:read, which it does not ask for)."""
    if not channel:
        if required:
            return failed(
                f"Slack: {variable} is not set",
                f"Set it to the id (C…) of the channel for missed-payment alerts and email reports (at the bottom "
                f"of the channel's details), and invite @{bot} there.",
            )
        return skipped(
            f"Slack: {variable} is not set, so actions are audited in the database only (optional)"
        )
    try:
        client.conversations_history(channel=channel, limit=1)
    except SlackApiError as refused:
        error = _slack_error(refused)
        if error == "not_in_channel":
            return failed(
                f"Slack: the bot is not in {variable} {channel}", f"Type /invite @{bot} in that channel."
            )
        if error == "channel_not_found":
            return failed(
                f"Slack: no channel {channel} ({variable}) that the bot can see",
                f"Use the channel's id (C…, at the bottom of its details), not its name; for a private channel, "
                f"invite @{bot} first.",
            )
        return failed(
            f"Slack: could not look into {variable} {channel} ({error})", "Fix the lines above first."
        )
    except (SlackClientError, OSError, ValueError) as unreachable:
        return failed(
            f"Slack: could not look into {variable} {channel} ({unreachable})", "Run the check again."
        )
    return ok(f"Slack: the bot is in {variable} {channel}")


def _payment_admins(client: WebClient, admins: list[str], granted: set[str] | None) -> list[Finding]:
    if not admins:
        return [
            skipped(
                "Slack: PAYMENT_ADMINS is empty, so nobody may refund, cancel, pause, charge or change emails"
            )
        ]
    if granted is not None and "users:read" not in granted:
        return [
            skipped(
                f"Slack: PAYMENT_ADMINS ({len(admins)}) not checked, as reading people needs the users:read scope",
                "Add users:read to the app and reinstall it to have them checked.",
            )
        ]
    findings = []
    for user_id in admins:
        try:
            user = client.users_info(user=user_id)["user"]
        except SlackApiError as refused:
            error = _slack_error(refused)
            if error == "user_not_found":
                findings.append(
                    failed(
                        f"Slack: payment admin {user_id} is nobody in this workspace",
                        "Use the person's member id (U…, in their profile under ⋮ → Copy member ID) in PAYMENT_ADMINS.",
                    )
                )
            else:
                findings.append(
                    failed(
                        f"Slack: could not look up payment admin {user_id} ({error})",
                        "Fix the lines above first.",
                    )
                )
            continue
        except (SlackClientError, OSError, ValueError) as unreachable:
            findings.append(
                failed(
                    f"Slack: could not look up payment admin {user_id} ({unreachable})",
                    "Run the check again.",
                )
            )
            continue
        name = user.get("name") or user_id
        if user.get("deleted"):
            findings.append(
                failed(
                    f"Slack: payment admin {user_id} (@{name}) is deactivated",
                    "Remove the id from PAYMENT_ADMINS.",
                )
            )
        elif user.get("is_bot"):
            findings.append(
                failed(
                    f"Slack: payment admin {user_id} (@{name}) is a bot, not a person",
                    "Remove the id from PAYMENT_ADMINS.",
                )
            )
        else:
            findings.append(ok(f"Slack: payment admin {user_id} is @{name}"))
    return findings


# --- Stripe -------------------------------------------------------------------------------------------------------

_STRIPE_KEY_TODO = "Copy a secret key (sk_…) or a restricted key (rk_…) from Stripe (Developers → API keys) into STRIPE_API_KEY."


@dataclass(frozen=True)
class Permission:
    """A restricted-key permission the bot needs, as Stripe's dashboard names it, and a harmless call that Stripe
    refuses with 403 without it and lets through to its own checks (a 400 or 404 here) with it."""

    name: str
    used_for: str
    probe: Callable[[stripe.StripeClient], object]


NEEDED_PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "Customers: Write",
        "email changes, the email check, webhooks, the import",
        lambda c: c.v1.customers.update(PROBE_ID, params={"metadata": {PROBE_ID: ""}}),
    ),
    Permission(
        "PaymentIntents: Write",
        "new orders (off-session charges), finding a charge whose answer was lost",
        lambda c: c.v1.payment_intents.create(params={}),
    ),
    Permission(
        "Refunds: Write",
        "refunds, and finding one whose answer was lost",
        lambda c: c.v1.refunds.create(params={}),
    ),
    Permission(
        "Subscriptions: Write",
        "cancel, pause, resume, next bill date, ending a paid-off plan",
        lambda c: c.v1.subscriptions.create(params={}),
    ),
    Permission(
        "Invoices: Read",
        "payments of subscriptions and plans",
        lambda c: c.v1.invoices.list(params={"limit": 1}),
    ),
    Permission(
        "Charges: Read", "refund webhooks, the import", lambda c: c.v1.charges.list(params={"limit": 1})
    ),
    Permission("PaymentMethods: Read", "the card on file", lambda c: c.v1.payment_methods.retrieve(PROBE_ID)),
    Permission(
        "Products: Read", "what a subscription is for", lambda c: c.v1.products.list(params={"limit": 1})
    ),
)


def key_kind(key: str) -> tuple[str, str] | None:
    """("secret" or "restricted", "test" or "live") from the key's prefix; None for any other key."""
    for prefix, kind in (("sk_", "secret"), ("rk_", "restricted")):
        for mode in ("test", "live"):
            if key.startswith(f"{prefix}{mode}_"):
                return kind, mode
    return None


def check_stripe(settings: Settings, public_url: str | None, limits: Limits) -> list[Finding]:
    key = settings.stripe_api_key
    if not key:
        return [failed("Stripe: STRIPE_API_KEY is not set", _STRIPE_KEY_TODO)]
    kind = key_kind(key)
    if kind is None:
        looks = " (it looks like a publishable key, pk_…)" if key.startswith("pk_") else ""
        return [failed(f"Stripe: STRIPE_API_KEY is not a secret or restricted key{looks}", _STRIPE_KEY_TODO)]
    client = stripe.StripeClient(
        key,
        stripe_version=API_VERSION,
        max_network_retries=0,
        base_addresses={"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None,
        http_client=stripe.RequestsClient(timeout=(min(3.0, limits.call_seconds), limits.call_seconds)),
    )
    try:
        account = client.v1.accounts.retrieve_current().to_dict()
    except stripe.PermissionError:
        account = None  # a restricted key need not read the account: it is only shown
    except stripe.AuthenticationError:
        return [failed("Stripe refused STRIPE_API_KEY (revoked, expired or mistyped)", _STRIPE_KEY_TODO)]
    except stripe.APIConnectionError:
        return [
            failed(
                f"Stripe at {settings.stripe_api_base or 'api.stripe.com'} could not be reached",
                "Check this machine's connection to Stripe (and STRIPE_API_BASE, if set).",
            )
        ]
    except stripe.StripeError as error:
        return [
            failed(
                f"Stripe did not answer as it should ({_stripe_reason(error)})",
                "Run the check again in a minute.",
            )
        ]
    key_type, mode = kind
    name = _account_name(account)
    findings = [
        ok(
            f"Stripe: the {key_type} key works, in {mode} mode, for "
            + (f"“{name}”" if name else "an account whose name this key may not read")
        )
    ]
    if key_type == "restricted":
        findings.append(_restricted_key_permissions(client))
    findings += _webhook_endpoints(client, public_url)
    findings.append(_webhook_secret(settings.stripe_webhook_secret))
    return findings


def _account_name(account: dict[str, Any] | None) -> str | None:
    if not account:
        return None
    dashboard = (account.get("settings") or {}).get("dashboard") or {}
    return (
        dashboard.get("display_name")
        or (account.get("business_profile") or {}).get("name")
        or account.get("id")
    )


def _stripe_reason(error: stripe.StripeError) -> str:
    if isinstance(error, stripe.APIConnectionError):
        return "no connection"
    return f"HTTP {error.http_status}" if error.http_status else type(error).__name__


def _restricted_key_permissions(client: stripe.StripeClient) -> Finding:
    missing: list[Permission] = []
    unknown: list[str] = []
    for permission in NEEDED_PERMISSIONS:
        try:
            permission.probe(client)
        except stripe.PermissionError:
            missing.append(permission)
        except stripe.InvalidRequestError:
            pass  # past the permission check: Stripe looked at the request itself
        except stripe.StripeError as error:
            unknown.append(f"{permission.name} ({_stripe_reason(error)})")
    if missing:
        return failed(
            f"Stripe: the restricted key lacks {', '.join(p.name for p in missing)}",
            "Edit the key in Stripe (Developers → API keys) and give it these permissions: "
            + "; ".join(f"{p.name} for {p.used_for}" for p in missing)
            + ".",
        )
    if unknown:
        return failed(f"Stripe: could not check {', '.join(unknown)}", "Run the check again in a minute.")
    return ok(f"Stripe: the restricted key has all {len(NEEDED_PERMISSIONS)} permissions the bot needs")


def _webhook_endpoints(client: stripe.StripeClient, public_url: str | None) -> list[Finding]:
    wanted = public_url.rstrip("/") + WEBHOOK_PATH if public_url else None
    events = ", ".join(sorted(HANDLED))
    try:
        endpoints = client.v1.webhook_endpoints.list(params={"limit": 100}).data
    except stripe.PermissionError:
        return [
            skipped(
                "Stripe: webhook endpoints not checked, as the restricted key may not read them",
                "Give the key Webhook Endpoints: Read to have them checked.",
            )
        ]
    except stripe.StripeError as error:
        return [
            failed(
                f"Stripe: could not list webhook endpoints ({_stripe_reason(error)})", "Run the check again."
            )
        ]
    ours = [
        e
        for e in endpoints
        if (
            e.url.rstrip("/") == wanted if wanted else urlsplit(e.url).path.rstrip("/").endswith(WEBHOOK_PATH)
        )
    ]
    if not ours:
        where = wanted or f"https://<your host>{WEBHOOK_PATH}"
        hint = "" if wanted else " Set PUBLIC_URL (https://<your host>) to have that exact address checked."
        return [
            failed(
                f"Stripe: no webhook endpoint sends events to {wanted or f'an address ending in {WEBHOOK_PATH}'}",
                f"In Stripe (Developers → Webhooks) add the endpoint {where} with the events {events}; put its "
                f"signing secret in STRIPE_WEBHOOK_SECRET.{hint}",
            )
        ]
    findings = []
    for endpoint in ours:
        enabled = set(endpoint.enabled_events or [])
        missing = [] if "*" in enabled else sorted(HANDLED - enabled)
        if endpoint.status != "enabled":
            findings.append(
                failed(
                    f"Stripe: the webhook endpoint {endpoint.url} is disabled",
                    "Enable it in Stripe (Developers → Webhooks).",
                )
            )
        elif missing:
            findings.append(
                failed(
                    f"Stripe: the webhook endpoint {endpoint.url} does not send {', '.join(missing)}",
                    "Add these events to the endpoint in Stripe (Developers → Webhooks → the endpoint → Update details).",
                )
            )
        else:
            findings.append(
                ok(
                    f"Stripe: the webhook endpoint {endpoint.url} sends all {len(HANDLED)} events the bot handles"
                )
            )
    return findings


def _webhook_secret(secret: str | None) -> Finding:
    todo = "Copy the endpoint's signing secret (whsec_…) from Stripe (Developers → Webhooks → the endpoint) into STRIPE_WEBHOOK_SECRET."
    if not secret:
        return failed("Stripe: STRIPE_WEBHOOK_SECRET is not set, so every webhook delivery is refused", todo)
    if not secret.startswith("whsec_"):
        return failed("Stripe: STRIPE_WEBHOOK_SECRET is not a webhook signing secret (whsec_…)", todo)
    return ok("Stripe: STRIPE_WEBHOOK_SECRET is set")


# --- CRMs ---------------------------------------------------------------------------------------------------------


def check_crms(settings: Settings) -> list[Finding]:
    findings = []
    if bool(settings.activecampaign_url) != bool(settings.activecampaign_api_key):
        given, lacking = (
            ("ACTIVECAMPAIGN_URL", "ACTIVECAMPAIGN_API_KEY")
            if settings.activecampaign_url
            else ("ACTIVECAMPAIGN_API_KEY", "ACTIVECAMPAIGN_URL")
        )
        findings.append(
            failed(
                f"ActiveCampaign: {given} is set but {lacking} is not, so it is not connected",
                "Set both (Settings → Developer in ActiveCampaign), or neither.",
            )
        )
    crms = crms_from_settings(settings)
    if not crms and not findings:
        return [skipped("CRMs: none connected, so emails are compared with Stripe only (optional)")]
    for crm in crms:
        try:
            crm.find_contact(PROBE_EMAIL)
        except CrmError as error:
            findings.append(failed(f"{crm.name}: a contact lookup failed", error.user_message))
        else:
            findings.append(ok(f"{crm.name}: the key works (a contact lookup answered)"))
    return findings
