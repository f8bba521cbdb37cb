"""Reading compose files from disk: safe YAML with a line map, `.env` files and variable interpolation."""
