"""The workflow file format: models, loading, checks, templates, schema and the graph."""
