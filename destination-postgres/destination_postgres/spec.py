"""The `spec` of destination-postgres, shaped like Airbyte's official destination-postgres.

Property names, defaults and the `ssl_mode`/`tunnel_method` oneOfs follow Airbyte's spec so that
a config written for Airbyte's connector validates here unchanged (PyAirbyte even adds a
`destinationType` key, hence `additionalProperties: true`). Kept free of airbyte_cdk imports so
the lean `write` path can read defaults from it.
"""

from __future__ import annotations

from typing import Any

from pgbyte_common.spec_fragments import connection_properties

DOCUMENTATION_URL = "https://docs.airbyte.com/integrations/destinations/postgres"
SYNC_MODES = ["overwrite", "append", "append_dedup"]


def connection_specification() -> dict[str, Any]:
    props = connection_properties()
    props["ssl_mode"]["order"] = 7
    props["jdbc_url_params"]["order"] = 9
    props["tunnel_method"]["order"] = 15
    props.update({
        "schema": {"title": "Default Schema", "type": "string", "default": "public",
                   "examples": ["public"], "order": 3,
                   "description": "The schema tables are written to when a stream has no "
                   "namespace. Defaults to \"public\"."},
        "ssl": {"title": "SSL Connection", "type": "boolean", "default": False, "order": 6,
                "description": "Encrypt the connection (sslmode=require) when ssl_mode is not "
                "set. ssl_mode, when set, wins."},
        "cdc_deletion_mode": {"title": "CDC deletion mode", "type": "string",
                              "enum": ["Hard delete", "Soft delete"], "default": "Hard delete",
                              "order": 8,
                              "description": "Whether to execute CDC deletions as hard deletes "
                              "(the row of a key whose latest record has _ab_cdc_deleted_at set "
                              "is deleted) or soft deletes (the row is kept, with "
                              "_ab_cdc_deleted_at set). Applies to append_dedup streams. "
                              "Defaults to hard deletes."},
        "raw_data_schema": {"title": "Raw Table Schema Name", "type": "string", "order": 10,
                            "description": "Schema for the _airbyte_raw_* tables. Default: the "
                            "raw table sits beside the normalized one, as in Airbyte's "
                            "normalization layout."},
        "disable_type_dedupe": {"title": "Raw tables only", "type": "boolean", "default": False,
                                "order": 11,
                                "description": "Write only the _airbyte_raw_* tables (no typed "
                                "tables)."},
        "drop_cascade": {"title": "Drop tables with CASCADE", "type": "boolean",
                         "default": False, "order": 12,
                         "description": "When an overwrite sync replaces a table, drop it with "
                         "CASCADE. WARNING: this also drops dependent views."},
        "unconstrained_number": {"title": "Unconstrained numeric columns", "type": "boolean",
                                 "default": True, "order": 13,
                                 "description": "Accepted for compatibility. pgbyte always "
                                 "creates number columns as unconstrained numeric (never "
                                 "numeric(38,9)), so no value is rounded or overflows."},
    })  # fmt: skip
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Postgres Destination Spec",
        "type": "object",
        # Airbyte's spec also requires port and schema, whose defaults (5432, "public") its UI
        # fills in; `write` applies them to a config without, so `check` accepts it too.
        "required": ["host", "username", "database"],
        "additionalProperties": True,
        "properties": props,
    }


def spec_message_body() -> dict[str, Any]:
    """The `spec` field of the SPEC message."""
    return {
        "documentationUrl": DOCUMENTATION_URL,
        "supportsIncremental": True,
        "supportsNormalization": False,
        "supportsDBT": False,
        "supported_destination_sync_modes": list(SYNC_MODES),
        "connectionSpecification": connection_specification(),
    }
