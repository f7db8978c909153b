"""`deploy`: bootstrap → push-image → register-task (→ service)."""
