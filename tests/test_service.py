"""Service settings: embedded defaults, and no default secret key in production."""

from __future__ import annotations

import pytest

from service.settings import SettingsError, load_settings


def test_development_defaults_are_embedded():
    settings = load_settings({})
    assert settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert settings["SQLALCHEMY_DATABASE_URI"].endswith("var/grader.db")
    assert settings["QUEUE"] == "embedded"
    assert len(settings["SECRET_KEY"]) >= 32
    assert load_settings({})["SECRET_KEY"] != settings["SECRET_KEY"]  # random, not a default


def test_production_refuses_to_start_without_a_secret_key():
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({"GRADER_ENV": "production"})
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({"GRADER_ENV": "production", "SECRET_KEY": "short"})
    settings = load_settings({"GRADER_ENV": "production", "SECRET_KEY": "x" * 40})
    assert settings["SECRET_KEY"] == "x" * 40 and settings["SESSION_COOKIE_SECURE"] is True


def test_settings_from_environment():
    settings = load_settings({"DATABASE_URL": "postgresql+psycopg://u@h/db", "QUEUE": "celery",
                              "RATE_LIMIT": "3/60", "WORKERS": "2"})
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
    assert (settings["QUEUE"], settings["WORKERS"]) == ("celery", 2)
    assert (settings["RATE_LIMIT_COUNT"], settings["RATE_LIMIT_WINDOW"]) == (3, 60)
    with pytest.raises(SettingsError, match="RATE_LIMIT"):
        load_settings({"RATE_LIMIT": "lots"})


def test_workers_follow_the_cores_unless_set(monkeypatch):
    monkeypatch.setattr("service.settings.usable_cpus", lambda: (0, 1, 2, 3, 4, 5, 6, 7))
    settings = load_settings({})
    assert (settings["RUNS_PER_HOST"], settings["WORKERS"]) == (8, 8)
    settings = load_settings({"CORES_PER_RUN": "3"})
    assert (settings["RUNS_PER_HOST"], settings["WORKERS"]) == (2, 2)
    settings = load_settings({"CORES_PER_RUN": "3", "WORKERS": "5", "RUNS_PER_HOST": "3"})
    assert (settings["RUNS_PER_HOST"], settings["WORKERS"]) == (3, 5)
    with pytest.raises(SettingsError, match="CORES_PER_RUN"):
        load_settings({"CORES_PER_RUN": "0"})
