"""The editor's settings file: defaults, damage, ranges, keys of other versions, recent files."""

from __future__ import annotations

import json

from desktop.settings import MAX_RECENT, AppSettings, SettingsStore


def test_missing_file_gives_defaults(tmp_path):
    store = SettingsStore(tmp_path / "settings.json")
    assert store.load() == AppSettings() and store.load_problem == ""


def test_damaged_file_gives_defaults_and_one_sentence(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    store = SettingsStore(path)
    assert store.load() == AppSettings()
    assert "damaged" in store.load_problem and store.load_problem.endswith(".")


def test_values_are_kept_inside_their_ranges(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"device": "quantum", "preview": "x", "autosave_minutes": -3, "autosave_keep": 0,
                                "theme": "neon", "model_folders": ["/a", "/a", ""], "steps": "ignored"}))
    s = SettingsStore(path).load()
    assert (s.device, s.preview, s.theme) == ("auto", "linear", "system")
    assert s.autosave_minutes == 0.1 and s.autosave_keep == 1 and s.model_folders == ["/a"]


def test_save_keeps_keys_it_does_not_know_and_model_discovery_reads_the_folders(tmp_path):
    from inference.models import find_model_folders

    path = tmp_path / "settings.json"
    models = tmp_path / "models"
    models.mkdir()
    path.write_text(json.dumps({"future_option": {"x": 1}, "extra_model_paths": []}))
    store = SettingsStore(path)
    settings = store.load()
    settings.model_folders = [str(models)]
    store.save(settings)
    data = json.loads(path.read_text())
    assert data["future_option"] == {"x": 1} and data["model_folders"] == [str(models)]
    found = find_model_folders(settings_file=path, default_folder=None, environ={})
    assert found.roots == [models.resolve()]


def test_recent_files_are_unique_newest_first_and_capped(tmp_path):
    s = AppSettings()
    for i in range(MAX_RECENT + 3):
        s = s.with_recent(tmp_path / f"p{i}.ora")
    s = s.with_recent(tmp_path / "p5.ora")
    assert s.recent_files[0].endswith("p5.ora") and len(s.recent_files) == MAX_RECENT
    assert len(set(s.recent_files)) == MAX_RECENT


def test_fast_path_setting_defaults_to_auto_survives_a_save_and_rejects_unknown_values(tmp_path):
    path = tmp_path / "settings.json"
    store = SettingsStore(path)
    assert store.load().fast_path == "auto"
    settings = store.load()
    settings.fast_path = "off"
    store.save(settings)
    assert SettingsStore(path).load().fast_path == "off"
    path.write_text(json.dumps({"fast_path": "turbo"}))
    assert SettingsStore(path).load().fast_path == "auto"
