"""Key mode: a service-account key in Secrets Manager, written to a file at task start."""
