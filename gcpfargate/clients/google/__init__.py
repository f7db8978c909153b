"""Google Cloud: IAM Admin (gRPC or REST), workload identity pools, universe domains."""
