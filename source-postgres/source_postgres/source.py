"""The CDK envelope: `SourcePostgres(airbyte_cdk.sources.Source)`.

Thin on purpose. spec/check/discover wrap spec.py, check.py and discovery.py in the CDK's
models; `read` (used in-process, e.g. by the CDK standard tests) parses the very lines the lean
console path writes (reader.read_messages) into AirbyteMessages. The console script sends `read`
to the lean path and every other verb here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    AirbyteStateMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    ConnectorSpecification,
    FailureType,
    Status,
)
from airbyte_cdk.sources import Source
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from pgbyte_common.errors import PgbyteError, SystemError_

from source_postgres.catalog import parse_catalog
from source_postgres.check import check as run_check
from source_postgres.lean import discover_catalog
from source_postgres.reader import ReadOutcome, read_messages
from source_postgres.spec import spec_message


def traced(exc: PgbyteError) -> AirbyteTracedException:
    """A PgbyteError as the CDK's exception (same message and failure_type)."""
    return AirbyteTracedException(
        message=exc.message,
        internal_message=exc.internal,
        failure_type=FailureType(exc.failure_type),
    )


class SourcePostgres(Source):
    """Airbyte source for PostgreSQL (pgbyte)."""

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return ConnectorSpecification(**spec_message())

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        ok, message = run_check(dict(config))
        return AirbyteConnectionStatus(
            status=Status.SUCCEEDED if ok else Status.FAILED, message=message
        )

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        try:
            catalog = discover_catalog(dict(config), lambda level, text: logger.log(
                logging.WARNING if level == "WARN" else logging.INFO, text))  # fmt: skip
        except PgbyteError as exc:
            raise traced(exc) from None
        # The CDK exports no AirbyteCatalog serializer; the message one parses the catalog.
        message = {"type": "CATALOG", "catalog": catalog}
        return AirbyteMessageSerializer.load(message).catalog

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: MutableMapping[str, Any] | list[Any] | None = None,
    ) -> Iterator[AirbyteMessage]:
        raw_catalog = (
            catalog
            if isinstance(catalog, dict)
            else ConfiguredAirbyteCatalogSerializer.dump(catalog)
        )
        outcome = ReadOutcome()
        try:
            streams = parse_catalog(raw_catalog)
            for blob in read_messages(dict(config), streams, outcome, _raw_state(state)):
                for line in blob.splitlines():
                    if line:
                        # json, not orjson: orjson reads an integer beyond 64 bits (a
                        # numeric(40,0)) as a float; json keeps it whole, and the CDK's
                        # printing falls back to json for it. A fraction beyond a double's
                        # digits still becomes a float here: the CDK's models carry no Decimal.
                        yield AirbyteMessageSerializer.load(
                            json.loads(line, parse_float=_finite_float)
                        )
        except PgbyteError as exc:
            raise traced(exc) from None
        if outcome.failed:
            names = ", ".join(f"{ns}.{name}" if ns else name for name, ns in outcome.failed)
            raise AirbyteTracedException(
                message=f"These streams did not sync successfully: {names}.",
                failure_type=FailureType.config_error,
            )


def _finite_float(text: str) -> float:
    """A JSON fraction as the CDK's float; one beyond a double's range (a numeric of over 308
    digits) is refused, not made infinite (the CDK would print it as null)."""
    value = float(text)
    if math.isinf(value):
        raise traced(SystemError_(
            f"A number of {len(text)} characters does not fit the float the CDK's in-process "
            "messages hold; read with the console script (source-postgres read), which prints "
            "it exactly."
        ))  # fmt: skip
    return value


def _raw_state(state: Any) -> Any:
    """The state as JSON data: the CDK hands over AirbyteStateMessage models (from read_state)."""
    if isinstance(state, list):
        return [s if isinstance(s, dict) else AirbyteStateMessageSerializer.dump(s) for s in state]
    return state
