"""The case matrix: axes and presets (``select``), sharding over machines, and the progress lines."""
