"""The reference floe.yaml (a byte-for-byte copy of shared/floe.example.yaml) is accepted as is."""

from __future__ import annotations

import pytest

from floe_egress.config.models import FloeSpec
from floe_egress.config.yamlsource import parse_yaml
from floe_egress.spec import load_spec
from tests.unit.config.conftest import EXAMPLE


def test_example_fits_the_models() -> None:
    spec = FloeSpec.model_validate(parse_yaml(EXAMPLE.read_text()).data)

    crm, app_db = spec.ingestion.destinations
    assert crm.sink_config["headers"] == {"Authorization": "Bearer ${env:CRM_TOKEN}"}
    assert crm.schedule.effective_interval == 5
    assert app_db.schedule.cron == "*/1 * * * *"
    assert spec.catalog.properties() == {
        "type": "sql",
        "uri": "sqlite:////var/lib/floe-egress/catalog.db",
        "warehouse": "file:///var/lib/floe-egress/warehouse",
    }


def test_example_validates_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "token-for-validation")
    monkeypatch.setenv("APP_DB_URL", "postgresql://user:pass@localhost:5432/app")

    loaded = load_spec(EXAMPLE, check_secrets=True)

    assert [d.name for d in loaded.spec.ingestion.destinations] == [
        "crm_contacts",
        "app_db_customers",
    ]
