"""Keyless mode: the task role exchanged for Google credentials through workload identity
federation."""
