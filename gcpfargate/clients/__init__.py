"""One adapter per outside system. Each imports its SDK lazily and turns the SDK's specific
exceptions into gcpfargate's own errors."""
