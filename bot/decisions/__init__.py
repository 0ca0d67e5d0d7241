"""Decision records and thread summaries: `!summary`, `!adr` and `archbot adr export`."""
