"""Dev tooling: the local Slack and Stripe stand-ins, the terminal renderer and shell, and demo data.

Tests, benchmarks and `customer-bot shell` / `seed` use it; the bot's runtime never imports it.
"""
