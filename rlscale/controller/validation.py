"""Config reading for the controller's YAML: see :mod:`rlscale.configschema` (which imports
nothing from the simulator)."""

from rlscale.configschema import ConfigError, Section

__all__ = ["ConfigError", "Section"]
