"""The connector's `spec`: Airbyte source-postgres's connectionSpecification, as a plain dict.

Property names, discriminators and defaults follow Airbyte's official source-postgres (3.x and
the 4.x Kotlin rewrite) so that their saved configs validate unchanged. Where the two differ we
accept both: `additionalProperties` stays open (the platform adds keys such as `ssl`), only the
keys every generation of the connector wrote are required, and the CDC variant keeps every
option any generation had. Kept free of CDK imports: `read` never needs the spec.
"""

from __future__ import annotations

import copy
from typing import Any

from pgbyte_common.spec_fragments import connection_properties

DOCUMENTATION_URL = "https://docs.airbyte.com/integrations/sources/postgres"

_CDC_PROPERTIES: dict[str, Any] = {
    "method": {"type": "string", "const": "CDC", "order": 1},
    "plugin": {
        "type": "string",
        "title": "Plugin",
        "description": "A logical decoding plugin installed on the PostgreSQL server.",
        "enum": ["pgoutput", "wal2json"],
        "default": "pgoutput",
        "order": 2,
    },
    "replication_slot": {
        "type": "string",
        "title": "Replication Slot",
        "description": "A logical replication slot (pg_create_logical_replication_slot).",
        "order": 3,
    },
    "publication": {
        "type": "string",
        "title": "Publication",
        "description": "A Postgres publication used for consuming changes.",
        "order": 4,
    },
    "initial_waiting_seconds": {
        "type": "integer",
        "title": "Initial Waiting Time in Seconds (Advanced)",
        "description": "How long to wait for new changes when a sync starts (Airbyte's "
        "default 1200, range 120-2400).",
        "default": 1200,
        "order": 5,
        "min": 120,
        "max": 2400,
    },
    "queue_size": {
        "type": "integer",
        "title": "Size of the queue (Advanced)",
        "description": "The size of the internal change queue.",
        "default": 10000,
        "order": 6,
        "min": 1000,
        "max": 10000,
    },
    "lsn_commit_behaviour": {
        "type": "string",
        "title": "LSN commit behaviour",
        "description": "When to confirm the processed WAL position to the source database.",
        "enum": ["While reading Data", "After loading Data in the destination"],
        "default": "After loading Data in the destination",
        "order": 7,
    },
    "heartbeat_action_query": {
        "type": "string",
        "title": "Debezium heartbeat query (Advanced)",
        "description": "A query run on the source database with each heartbeat.",
        "default": "",
        "order": 8,
    },
    "invalid_cdc_cursor_position_behavior": {
        "type": "string",
        "title": "Invalid CDC position behavior (Advanced)",
        "description": "Whether to fail or re-sync when the saved WAL position is no longer valid.",
        "enum": ["Fail sync", "Re-sync data"],
        "default": "Fail sync",
        "order": 9,
    },
    "initial_load_timeout_hours": {
        "type": "integer",
        "title": "Initial Load Timeout in Hours (Advanced)",
        "description": "How long an initial load may run before catching up on changes.",
        "default": 8,
        "order": 10,
        "min": 4,
        "max": 24,
    },
    "debezium_shutdown_timeout_seconds": {
        "type": "integer",
        "title": "Shutdown Timeout in Seconds (Advanced)",
        "description": "Accepted for compatibility with Airbyte configs; unused.",
        "default": 60,
        "order": 11,
        "min": 1,
        "max": 3600,
    },
}

REPLICATION_METHOD: dict[str, Any] = {
    "type": "object",
    "title": "Update Method",
    "description": "Configures how data is extracted from the database. pgbyte reads with "
    "Standard (full refresh, or incremental by a cursor column) or Xmin (incremental by the "
    "xmin system column); CDC is accepted but not supported yet.",
    "order": 9,
    "display_type": "radio",
    "oneOf": [
        {
            "title": "Scan Changes with User Defined Cursor",
            "description": "Reads every row (full refresh) or the rows past a cursor column.",
            "required": ["method"],
            "additionalProperties": True,
            "properties": {"method": {"type": "string", "const": "Standard", "order": 0}},
        },
        {
            "title": "Detect Changes with Xmin System Column",
            "description": "Incremental reads of the rows inserted or updated since the last "
            "sync, found by the xmin system column (wraparound-safe). Deletes are not seen; "
            "views can only be fully refreshed.",
            "required": ["method"],
            "additionalProperties": True,
            "properties": {"method": {"type": "string", "const": "Xmin", "order": 0}},
        },
        {
            "title": "Read Changes using Write-Ahead Log (CDC)",
            "description": "Logical replication from the WAL (not supported yet).",
            "required": ["method", "replication_slot", "publication"],
            "additionalProperties": True,
            "properties": _CDC_PROPERTIES,
        },
    ],
}


def connection_specification() -> dict[str, Any]:
    """The JSON schema a source-postgres config must satisfy."""
    properties = connection_properties()
    properties["schemas"] = {
        "title": "Schemas",
        "description": "The list of schemas (case sensitive) to sync from. Defaults to public; "
        "an empty list means every schema the user can read.",
        "type": "array",
        "items": {"type": "string"},
        "minItems": 0,
        "uniqueItems": True,
        "default": ["public"],
        "order": 3,
    }
    properties["replication_method"] = copy.deepcopy(REPLICATION_METHOD)
    # Options of Airbyte's 4.x spec: accepted so its configs validate; pgbyte needs none of
    # them (discover always checks privileges, in one query).
    properties.update({
        "check_privileges": {"type": "boolean", "default": True, "order": 13,
                             "title": "Check Table and Column Access Privileges",
                             "description": "Accepted for compatibility; pgbyte always "
                             "discovers only what the user can SELECT."},
        "checkpoint_target_interval_seconds": {"type": "integer", "default": 300, "order": 15,
                                               "title": "Checkpoint Target Time Interval",
                                               "description": "Accepted for compatibility."},
        "max_db_connections": {"type": "integer", "order": 16,
                               "title": "Max Concurrent Queries to Database",
                               "description": "Accepted for compatibility; a sync uses one "
                               "connection (one consistent snapshot)."},
    })  # fmt: skip
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Postgres Source Spec",
        "type": "object",
        # Only what every generation of Airbyte's spec required and we truly need.
        "required": ["host", "database", "username"],
        "additionalProperties": True,
        "properties": properties,
    }


def spec_message() -> dict[str, Any]:
    """The `spec` payload (ConnectorSpecification) as a plain dict."""
    return {
        "documentationUrl": DOCUMENTATION_URL,
        "connectionSpecification": connection_specification(),
        "supportsIncremental": True,
        "supported_destination_sync_modes": [],
    }
