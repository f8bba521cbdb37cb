"""`rnix top`: the snapshot model (no textual) and the full-screen view (textual, imported lazily)."""
