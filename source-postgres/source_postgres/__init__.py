"""pgbyte's Airbyte source connector for PostgreSQL."""
