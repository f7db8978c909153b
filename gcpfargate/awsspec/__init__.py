"""What AWS accepts, as local rules: EventBridge Scheduler expressions, Fargate task sizes.

Below `settings` (which validates `[schedule]`, `[jobs.*]` and task sizes at load) and above nothing
but `errors`, so every layer may use them."""
