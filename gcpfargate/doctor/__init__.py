"""`doctor`: the checks, one module per area."""
