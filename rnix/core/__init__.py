"""The pure core of rnix: spec model, validation, DAG layering, budget allocation and planning.

Nothing under `rnix.core` performs I/O, reads the clock or imports litellm, rich, textual or psutil;
`tests/core/test_import_hygiene.py` enforces it.
"""
