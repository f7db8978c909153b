"""AWS IAM: role names and documents, policy evaluation, propagation, the execution role."""
