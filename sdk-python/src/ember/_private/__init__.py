"""ember's internals: nothing here is public API."""
