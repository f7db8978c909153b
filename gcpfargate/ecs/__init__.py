"""ECS at run time: the cluster, services, one-off runs, schedules, logs, per-run overrides."""
