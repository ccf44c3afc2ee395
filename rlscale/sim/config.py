"""Config reading for the simulator's YAML files (scenarios): see :mod:`rlscale.configschema`."""

from rlscale.configschema import ConfigError, Section

__all__ = ["ConfigError", "Section"]
