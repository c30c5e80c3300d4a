"""ssl_registry.toml stays well-formed and equal to what first-party plugins register."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from selfsup.catalog import catalog_path, load_catalog
from selfsup.plugins import PluginManager

FIRST_PARTY = ("selfsup-text", "selfsup-vision", "selfsup-speech", "selfsup-multimodal", "selfsup-video")
REPO = Path(__file__).resolve().parents[1]


def test_catalog_is_the_top_level_file_and_complete():
    assert catalog_path().resolve() == (REPO / "ssl_registry.toml").resolve()
    entries = load_catalog()
    by_dist: dict[str, set[str]] = {}
    for e in entries:
        by_dist.setdefault(e.distribution, set()).add(e.name)
    assert by_dist["selfsup-text"] >= {"clm", "mlm", "nsp", "simcse"}
    assert by_dist["selfsup-vision"] >= {"mae", "simclr", "deepcluster", "swav"}
    assert by_dist["selfsup-speech"] >= {"wav2vec2", "hubert", "apc"}
    assert by_dist["selfsup-multimodal"] >= {"clip"}
    assert by_dist["selfsup-video"] >= {"shuffle_and_learn", "order_prediction", "arrow_of_time", "videomae", "cvrl"}
    assert all(e.paper and e.summary for e in entries)


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.parametrize("dist", FIRST_PARTY)
def test_catalog_matches_what_installed_first_party_plugins_register(dist):
    if not _installed(dist):
        pytest.skip(f"{dist} is not installed in this environment")
    registry = PluginManager().registry
    registered = {n for n, c in registry.components["pretext_task"].items() if c.distribution == dist}
    catalogued = {e.name for e in load_catalog() if e.distribution == dist}
    assert registered == catalogued
    for name in registered:
        entry = next(e for e in load_catalog() if e.name == name)
        assert registry.get("pretext_task", name).modality == entry.modality
