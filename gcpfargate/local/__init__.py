"""`run-local`: the task on the local engine, the way Fargate starts it."""
