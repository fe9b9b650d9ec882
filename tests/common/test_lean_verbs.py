"""check and discover answer without importing airbyte_cdk (it costs seconds per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("CDK-IMPORTED=%s\\n" % ("airbyte_cdk" in sys.modules)))
sys.argv = [{prog!r}] + {args!r}
from {module} import run
run()
"""


def _run(module: str, prog: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    code = PROBE.format(prog=prog, args=args, module=module)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("verb", ["check", "discover"])
def test_source_verbs_are_lean(verb, source_conn, source_config, tmp_path) -> None:
    """source-postgres check/discover answer correctly and never import airbyte_cdk."""
    source_conn.execute("CREATE TABLE t (id int primary key)")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(source_config))
    result = _run("source_postgres.run", "source-postgres", [verb, "--config", str(config)])
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [m["type"] for m in messages] == ["CONNECTION_STATUS" if verb == "check" else "CATALOG"]
    if verb == "check":
        assert messages[0]["connectionStatus"]["status"] == "SUCCEEDED"
    else:
        assert [s["name"] for s in messages[0]["catalog"]["streams"]] == ["t"]
    assert "CDK-IMPORTED=False" in result.stderr


def test_destination_check_is_lean(dest_config, tmp_path) -> None:
    """destination-postgres check succeeds without importing airbyte_cdk."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dest_config))
    result = _run("destination_postgres.run", "destination-postgres", ["check", "--config",
                                                                        str(config)])  # fmt: skip
    status = json.loads(result.stdout.strip().splitlines()[-1])["connectionStatus"]
    assert status["status"] == "SUCCEEDED", status
    assert "CDK-IMPORTED=False" in result.stderr


def test_invalid_config_is_reported_by_check(tmp_path) -> None:
    """A config the spec rejects gives CONNECTION_STATUS FAILED naming the problem, quoting a
    short value of a field that is not secret (as the README says)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"host": "localhost", "port": "not-a-port", "database": "d",
                                  "username": "u", "password": "pw-123456789"}))  # fmt: skip
    result = _run("source_postgres.run", "source-postgres", ["check", "--config", str(config)])
    status = json.loads(result.stdout.strip())["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "Config validation error" in status["message"] and "port" in status["message"]
    assert "'not-a-port' is not of type 'integer'" in status["message"], status["message"]
    assert "pw-123456789" not in result.stdout + result.stderr


PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    "program,module", [("source-postgres", "source_postgres.run"),
                       ("destination-postgres", "destination_postgres.run")]
)  # fmt: skip
def test_invalid_config_never_quotes_a_secret(program, module, tmp_path) -> None:
    """A config the spec rejects inside an object holding secrets (an ssl_mode with a PEM key,
    whose newlines a repr would escape) is reported by place and rule, with no secret in it."""
    config = tmp_path / "config.json"
    ssl_mode = {"mode": "verify-full", "client_certificate": PEM, "client_key": PEM,
                "ca_certificate": 987654321}  # fmt: skip
    config.write_text(json.dumps({"host": "localhost", "port": 5432, "database": "d",
                                  "schema": "public", "username": "u", "password": 'q"uo\\te-pw',
                                  "ssl_mode": ssl_mode}))  # fmt: skip
    result = _run(module, program, ["check", "--config", str(config)])
    status = json.loads(result.stdout.strip().splitlines()[-1])["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "ssl_mode.ca_certificate" in status["message"], status
    secrets = ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA", "PRIVATE KEY", "uo\\te-pw", "uo\\\\te",
               "987654321")  # fmt: skip
    for secret in secrets:
        assert secret not in result.stdout + result.stderr, secret


@pytest.mark.parametrize(
    "module,prog",
    [
        ("source_postgres.run", "source-postgres"),
        ("destination_postgres.run", "destination-postgres"),
    ],
)
def test_no_verb_or_help_prints_usage(module, prog) -> None:
    """No verb or an unknown one: usage on stderr, exit 2, nothing on stdout (no traceback, no
    log line); --help: usage on stdout, exit 0."""
    for args, code in (([], 2), (["frobnicate"], 2), (["--help"], 0)):
        result = _run(module, prog, args)
        assert result.returncode == code, (args, result.stderr)
        usage = result.stdout if code == 0 else result.stderr
        assert usage.startswith(f"usage: {prog}"), (args, usage)
        assert "Traceback" not in result.stderr
        assert code == 0 or result.stdout == ""


ENCRYPTED_KEY = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQI\n"
    "-----END ENCRYPTED PRIVATE KEY-----\n"
)


@pytest.mark.parametrize("connector", ["source", "destination"])
def test_an_encrypted_client_key_without_its_password_is_named(
    connector, source_config, dest_config, tmp_path
) -> None:
    """ssl_mode with an encrypted client_key and no client_key_password: check fails at once
    saying which field to set, and never prompts for a passphrase on the terminal or reads one
    from stdin (OpenSSL would; stdin here holds a line it would have taken)."""
    base = source_config if connector == "source" else dest_config
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**base, "ssl_mode": {
        "mode": "require", "client_certificate": PEM, "client_key": ENCRYPTED_KEY}}))  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).parent / f"{connector}-postgres"), "check", "--config",
         str(config)],
        input="a-passphrase\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    status = json.loads(result.stdout.strip().splitlines()[-1])["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "client_key is encrypted: set ssl_mode.client_key_password" in status["message"]
    assert "pass phrase" not in result.stderr.lower(), result.stderr


def test_a_config_missing_in_the_image_names_the_mount(tmp_path) -> None:
    """In our image (AIRBYTE_ENTRYPOINT set), a config file that cannot be read says how it
    gets there: mounted with -v, readable by the container's uid; outside, just the error."""
    missing = tmp_path / "secrets" / "config.json"
    script = str(Path(sys.executable).parent / "source-postgres")
    for env, hint in (({"AIRBYTE_ENTRYPOINT": "/bin/true"}, True), ({}, False)):
        result = subprocess.run(
            [script, "check", "--config", str(missing)], capture_output=True, text=True,
            timeout=60, env={"PATH": "/usr/bin:/bin", **env},
        )  # fmt: skip
        status = json.loads(result.stdout.strip().splitlines()[-1])["connectionStatus"]
        assert status["status"] == "FAILED" and "No such file" in status["message"]
        assert (f"docker run -v HOSTDIR:{missing.parent}:ro" in status["message"]) is hint


@pytest.mark.parametrize("connector", ["source", "destination"])
def test_inline_certificates_leave_no_file_behind(
    connector, source_config, dest_config, tmp_path
) -> None:  # fmt: skip
    """A certificate given inline is written to a private temporary directory for libpq; it is
    gone when check ends (the verbs end by exit_now, which still runs the exit functions)."""
    base = source_config if connector == "source" else dest_config
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**base, "ssl_mode": {"mode": "verify-ca",
                                                       "ca_certificate": PEM}}))  # fmt: skip
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).parent / f"{connector}-postgres"), "check", "--config",
         str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip
    status = json.loads(result.stdout.strip().splitlines()[-1])["connectionStatus"]
    assert status["status"] == "FAILED", status  # the test server speaks no SSL
    assert "ssl" in status["message"].lower(), status
    assert list(temp.iterdir()) == []
