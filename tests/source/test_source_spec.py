"""`source-postgres spec` through the console script."""

from __future__ import annotations

import json

import jsonschema
import pytest
from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.test.standard_tests._spec_lint import find_secret_marking_errors
from source_helpers import REPO_ROOT, run_source

AIRBYTE_CONFIGS = sorted(
    (REPO_ROOT / "source-postgres" / "integration_tests").glob("airbyte_*.json")
)


@pytest.fixture(scope="module")
def spec() -> dict:
    result = run_source("spec")
    assert result.returncode == 0, result.stderr
    (message,) = result.of_type("SPEC")
    return message["spec"]


def test_spec_is_one_valid_connector_specification(spec) -> None:
    """spec prints one SPEC that parses as a ConnectorSpecification with a documentationUrl."""
    parsed = ConnectorSpecification(**spec)
    assert parsed.documentationUrl
    assert spec["supportsIncremental"] is True


def test_spec_passes_cdk_secret_lint(spec) -> None:
    """Every secret-looking property is marked airbyte_secret where the CDK masks it."""
    assert find_secret_marking_errors(spec["connectionSpecification"]) == []


@pytest.mark.parametrize("path", AIRBYTE_CONFIGS, ids=lambda p: p.stem)
def test_airbyte_configs_validate_unchanged(spec, path) -> None:
    """Configs shaped like Airbyte's own source-postgres saves them validate against our spec."""
    jsonschema.validate(json.loads(path.read_text()), spec["connectionSpecification"])


def test_minimal_config_validates(spec) -> None:
    """host, database and username alone are a valid config (everything else has defaults)."""
    jsonschema.validate(
        {"host": "h", "database": "d", "username": "u"}, spec["connectionSpecification"]
    )


def test_replication_methods_and_schemas_default(spec) -> None:
    """replication_method offers Standard, Xmin and CDC; schemas defaults to public."""
    properties = spec["connectionSpecification"]["properties"]
    methods = [
        v["properties"]["method"]["const"] for v in properties["replication_method"]["oneOf"]
    ]
    assert methods == ["Standard", "Xmin", "CDC"]
    assert properties["schemas"]["default"] == ["public"]
    assert properties["password"]["airbyte_secret"] is True
