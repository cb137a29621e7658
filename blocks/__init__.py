"""Pure renderers: view models in, Slack Block Kit out, always within Slack's limits."""
