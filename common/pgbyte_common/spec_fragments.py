"""JSON-schema pieces both connectors' specs share, shaped like Airbyte's official Postgres specs.

Property names, oneOf discriminators (`mode`, `tunnel_method`) and secret markings follow
Airbyte's source-postgres/destination-postgres so that their configs validate here unchanged.
"""

from __future__ import annotations

import copy
from typing import Any


def _ssl_variant(
    mode: str, description: str, *, certificates: bool = False, ca_required: bool = False
) -> dict[str, Any]:
    properties: dict[str, Any] = {"mode": {"type": "string", "const": mode, "order": 0}}
    required = ["mode"]
    if ca_required:
        required.append("ca_certificate")
    if certificates:
        properties.update({
            "ca_certificate": {"type": "string", "title": "CA Certificate",
                               "description": "CA certificate (PEM)", "airbyte_secret": True,
                               "multiline": True, "order": 1},
            "client_certificate": {"type": "string", "title": "Client Certificate",
                                   "description": "Client certificate (PEM)",
                                   "airbyte_secret": True, "multiline": True, "order": 2},
            "client_key": {"type": "string", "title": "Client Key",
                           "description": "Client key (PEM)", "airbyte_secret": True,
                           "multiline": True, "order": 3},
            "client_key_password": {"type": "string", "title": "Client key password",
                                    "description": "Password for the client key, if encrypted.",
                                    "airbyte_secret": True, "order": 4},
        })  # fmt: skip
    return {
        "title": mode,
        "description": description,
        "additionalProperties": True,
        "required": required,
        "properties": properties,
    }


SSL_MODE: dict[str, Any] = {
    "title": "SSL Modes",
    "description": "SSL connection modes (libpq's sslmode).",
    "type": "object",
    "order": 8,
    "oneOf": [
        _ssl_variant("disable", "Disables encryption of communication."),
        _ssl_variant("allow", "Enables encryption only when the server requires it."),
        _ssl_variant("prefer", "Encrypts when the server supports it (libpq's default)."),
        _ssl_variant("require", "Always encrypts; fails when the server does not support SSL."),
        _ssl_variant(
            "verify-ca",
            "Encrypts and verifies the server's CA.",
            certificates=True,
            ca_required=True,
        ),
        _ssl_variant(
            "verify-full",
            "Encrypts and verifies the CA and the hostname (against the system's "
            "trusted CAs when no CA certificate is given).",
            certificates=True,
        ),
    ],
}

TUNNEL_METHOD: dict[str, Any] = {
    "type": "object",
    "title": "SSH Tunnel Method",
    "description": "Whether to reach the database through an SSH tunnel. pgbyte supports "
    "NO_TUNNEL; open a tunnel yourself (ssh -L) for the others.",
    "oneOf": [
        {"title": "No Tunnel", "required": ["tunnel_method"],
         "properties": {"tunnel_method": {"type": "string", "const": "NO_TUNNEL", "order": 0,
                                          "description": "No ssh tunnel needed."}}},
        {"title": "SSH Key Authentication",
         "required": ["tunnel_method", "tunnel_host", "tunnel_port", "tunnel_user", "ssh_key"],
         "properties": {
             "tunnel_method": {"type": "string", "const": "SSH_KEY_AUTH", "order": 0},
             "tunnel_host": {"type": "string", "title": "SSH Tunnel Jump Server Host", "order": 1},
             "tunnel_port": {"type": "integer", "title": "SSH Connection Port", "minimum": 0,
                             "maximum": 65536, "default": 22, "order": 2},
             "tunnel_user": {"type": "string", "title": "SSH Login Username", "order": 3},
             "ssh_key": {"type": "string", "title": "SSH Private Key", "airbyte_secret": True,
                         "multiline": True, "order": 4},
         }},
        {"title": "Password Authentication",
         "required": ["tunnel_method", "tunnel_host", "tunnel_port", "tunnel_user",
                      "tunnel_user_password"],
         "properties": {
             "tunnel_method": {"type": "string", "const": "SSH_PASSWORD_AUTH", "order": 0},
             "tunnel_host": {"type": "string", "title": "SSH Tunnel Jump Server Host", "order": 1},
             "tunnel_port": {"type": "integer", "title": "SSH Connection Port", "minimum": 0,
                             "maximum": 65536, "default": 22, "order": 2},
             "tunnel_user": {"type": "string", "title": "SSH Login Username", "order": 3},
             "tunnel_user_password": {"type": "string", "title": "Password",
                                      "airbyte_secret": True, "order": 4},
         }},
    ],
}  # fmt: skip


def connection_properties() -> dict[str, Any]:
    """host, port, database, username, password, jdbc_url_params, ssl_mode, tunnel_method."""
    return copy.deepcopy({
        "host": {"title": "Host", "description": "Hostname of the database.", "type": "string",
                 "order": 0},
        "port": {"title": "Port", "description": "Port of the database.", "type": "integer",
                 "minimum": 0, "maximum": 65536, "default": 5432, "examples": ["5432"],
                 "order": 1},
        "database": {"title": "Database Name", "description": "Name of the database.",
                     "type": "string", "order": 2},
        "username": {"title": "Username", "description": "Username to access the database.",
                     "type": "string", "order": 4},
        "password": {"title": "Password", "description": "Password associated with the username.",
                     "type": "string", "airbyte_secret": True, "order": 5, "always_show": True},
        "jdbc_url_params": {"title": "JDBC URL Parameters (Advanced)",
                            "description": "Additional properties as 'key=value' pairs joined "
                            "by '&' (e.g. connectTimeout=10&ApplicationName=etl). JDBC names "
                            "and libpq keywords are accepted; unknown keys are rejected.",
                            "type": "string", "order": 6},
        "ssl_mode": SSL_MODE,
        "tunnel_method": TUNNEL_METHOD,
    })  # fmt: skip
