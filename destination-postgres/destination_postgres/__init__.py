"""pgbyte's Airbyte destination connector for PostgreSQL."""
