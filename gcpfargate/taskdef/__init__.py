"""The task definition: template, guard, Fargate rules, register, revisions, init."""
