"""The four steps and the operations. Nothing here prints: results are returned as objects and
progress goes through a `Reporter`."""
