"""One module per resource; each endpoint names its action and resource first."""
