"""Puts the repository's ``sweeps/`` on Hydra's config search path (``--config-name table2``)."""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

SWEEPS_DIR = Path(__file__).resolve().parents[3] / "sweeps"


class FCNLabSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="fcnlab-sweeps", path=f"file://{SWEEPS_DIR}")
