"""TRACE ERROR messages as the protocol defines them: `message` for users, `internal_message` the
error's own text, `stack_trace` the traceback (the platform keeps it as the failure's
stacktrace), every field masked."""

from __future__ import annotations

import io

import orjson
from airbyte_cdk.models import AirbyteMessageSerializer
from pgbyte_common.errors import ConfigError
from pgbyte_common.messages import MessageWriter
from pgbyte_common.secrets import Masker


def _trace_of(exc: BaseException) -> dict:
    out = io.BytesIO()
    MessageWriter(out, Masker({"hunter2-secret"})).exception(exc)
    message = orjson.loads(out.getvalue())
    AirbyteMessageSerializer.load(message)  # a valid AirbyteMessage
    return message["trace"]["error"]


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # with its traceback, as a connector catches it
        return caught


def test_an_unexpected_error_keeps_its_traceback_in_stack_trace() -> None:
    error = _trace_of(_raise(ValueError("bad hunter2-secret value")))
    assert error["failure_type"] == "system_error"
    assert error["message"] == "Unexpected error: bad **** value"
    assert "Traceback" not in error["internal_message"]
    assert "ValueError" in error["internal_message"]
    assert error["stack_trace"].startswith("Traceback (most recent call last)")
    assert "_raise" in error["stack_trace"] and "ValueError: bad **** value" in error["stack_trace"]
    assert "hunter2-secret" not in orjson.dumps(error).decode()


def test_a_known_error_keeps_its_message_and_type() -> None:
    error = _trace_of(_raise(ConfigError("Schema x does not exist.")))
    assert (error["failure_type"], error["message"]) == ("config_error", "Schema x does not exist.")
    assert error["internal_message"] == "Schema x does not exist."
    assert "ConfigError: Schema x does not exist." in error["stack_trace"]


def test_a_classified_database_error_keeps_the_traceback_of_its_cause() -> None:
    """classify_error makes a new exception that was never raised: its stack_trace still shows
    where the database error came from (its cause)."""
    import psycopg
    from pgbyte_common.errors import classify_error

    cause = _raise(psycopg.errors.DivisionByZero("division by zero"))
    error = _trace_of(classify_error(cause, context="Writing to the destination failed"))
    assert error["message"].startswith("Writing to the destination failed: division by zero")
    assert "Traceback (most recent call last)" in error["stack_trace"]
    assert "DivisionByZero: division by zero" in error["stack_trace"]
    assert "direct cause" in error["stack_trace"]
