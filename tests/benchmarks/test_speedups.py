"""The benchmark's speed-up switches (benchmarks/speedups.py) and how results record them."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from benchmarks.results import ScenarioResult, markdown_table, merge_results
from benchmarks.speedups import available, parse_off, switched_off, switches
from studio.config import StudioSettings

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def test_every_speedup_offered_is_a_setting_of_the_service() -> None:
    names = [s.name for s in available()]
    assert {"warm_pool", "preload", "standby", "shell", "deps_seed", "direct"} <= set(names)
    for speedup in available():
        assert speedup.setting in StudioSettings.model_fields


def test_off_means_all_and_without_names_some() -> None:
    assert parse_off("on", None) == frozenset()
    # Every speed-up, but not the OS boundary: a cost, switched off by name only.
    assert parse_off("off", None) == frozenset(s.name for s in available()) - {"isolation"}
    assert parse_off("on", "isolation") == frozenset({"isolation"})
    assert parse_off("on", "standby, shell") == frozenset({"standby", "shell"})
    with pytest.raises(SystemExit, match=r"unknown speed-up.*nope.*known: warm_pool"):
        parse_off("on", "standby,nope")
    with pytest.raises(SystemExit, match="on or off"):
        parse_off("sometimes", None)


def test_switched_off_sets_the_settings_the_service_reads_and_restores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_VITE_STANDBY", "true")
    monkeypatch.delenv("COMPONENT_STUDIO_WARM_WORKERS", raising=False)
    with switched_off({"standby", "warm_pool", "direct"}):
        settings = StudioSettings()
        assert settings.vite_standby is False
        assert settings.warm_workers == 0
        assert settings.ws_direct_port == 0
        assert settings.prebuilt_shell is True
    assert os.environ["COMPONENT_STUDIO_VITE_STANDBY"] == "true"
    assert "COMPONENT_STUDIO_WARM_WORKERS" not in os.environ


def test_without_isolation_runs_vite_with_no_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPONENT_STUDIO_ISOLATION", raising=False)
    assert StudioSettings().boundary().enforced
    with switched_off({"isolation"}):
        assert not StudioSettings().boundary().enforced
    assert StudioSettings().boundary().enforced


def test_a_run_with_speedups_off_keeps_its_rows_beside_the_full_services() -> None:
    full = ScenarioResult("create_ready", "create -> ready", samples=[0.3])
    full.speedups = switches(())
    bare = ScenarioResult("create_ready", "create -> ready", samples=[0.9])
    bare.speedups = switches({"standby", "shell"})
    document = merge_results(None, [full], machine={}, quick=True, now=NOW)
    document = merge_results(document, [bare], machine={}, quick=True, now=NOW)
    assert set(document["scenarios"]) == {"create_ready", "create_ready [without standby,shell]"}
    recorded = document["scenarios"]["create_ready [without standby,shell]"]["speedups"]
    assert recorded["standby"] is False and recorded["warm_pool"] is True
    table = markdown_table(document)
    assert "| create -> ready (quick) |" in table
    assert "| create -> ready (without standby, shell) (quick) |" in table
