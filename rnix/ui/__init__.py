"""Output: the JSON envelope and the human (rich) renderers of the same data."""
