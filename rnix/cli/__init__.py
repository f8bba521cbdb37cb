"""The click command tree of rnix."""
