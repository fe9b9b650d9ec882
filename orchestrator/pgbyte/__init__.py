"""pgbyte: a thin orchestrator that pipes an Airbyte source into a destination per connection."""
