"""The CDK-side connector class: spec and check through airbyte_cdk, write via the same Writer.

The console script sends `write` to the lean path (destination_postgres.lean); this class's
`write` is for in-process use (the CDK's tools, tests) and drives the same Writer.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    ConnectorSpecification,
    ConnectorSpecificationSerializer,
    Status,
)

from destination_postgres.check import run_check
from destination_postgres.lean import write_lines
from destination_postgres.spec import spec_message_body


class DestinationPostgres(Destination):
    """pgbyte's destination-postgres."""

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return ConnectorSpecificationSerializer.load(spec_message_body())

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        ok, message = run_check(dict(config))
        if ok:
            return AirbyteConnectionStatus(status=Status.SUCCEEDED)
        return AirbyteConnectionStatus(status=Status.FAILED, message=message)

    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        catalog = ConfiguredAirbyteCatalogSerializer.dump(configured_catalog)
        lines = ([orjson.dumps(AirbyteMessageSerializer.dump(m))] for m in input_messages)
        out = io.BytesIO()
        write_lines(dict(config), catalog, lines, out)
        yield from _messages(out.getvalue())


def _messages(data: bytes) -> Iterator[AirbyteMessage]:
    for line in data.splitlines():
        if line.strip():
            yield AirbyteMessageSerializer.load(orjson.loads(line))
