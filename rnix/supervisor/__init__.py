"""The kernel: one asyncio supervisor per `compose up` that spawns, times, signals and records agents.

`subprocess`, `os.kill` and `os.fork` appear only in this package (STYLE.md, practice 2).
"""
