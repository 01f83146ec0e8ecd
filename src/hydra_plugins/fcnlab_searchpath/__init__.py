"""Puts fcnlab's ``sweeps/`` on Hydra's config search path (``--config-name table2``).

Importing ``fcnlab.config`` also registers fcnlab's resolvers, so any Hydra app (a CLI, a test's
``compose()``) can resolve fcnlab's configs.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from fcnlab.config import SWEEPS_DIR


class FCNLabSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="fcnlab-sweeps", path=f"file://{SWEEPS_DIR}")
