"""gcpfargate: Google Cloud service-account keys for Amazon ECS Fargate tasks, done safely."""

__version__ = "0.1.0"
