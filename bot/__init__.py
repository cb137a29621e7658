"""customer-records-bot: customer records in Slack, backed by our database and Stripe."""
