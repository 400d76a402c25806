"""Wire formats, one module per provider API."""
