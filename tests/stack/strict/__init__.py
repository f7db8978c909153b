"""A proxy in front of moto that behaves like AWS where moto does not (see `layer`)."""

from tests.stack.strict.layer import Settings, StrictLayer, StrictRule, all_rules

__all__ = ["Settings", "StrictLayer", "StrictRule", "all_rules"]
