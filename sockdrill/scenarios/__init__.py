"""The scenario catalogue: one YAML file per seed scenario, each with variants, validated as a whole."""

from sockdrill.scenarios.catalogue_loader import Catalogue, load_catalogue, load_scenario_file
from sockdrill.scenarios.schema import Scenario, Variant

__all__ = ["Catalogue", "Scenario", "Variant", "load_catalogue", "load_scenario_file"]
