"""What the test modules share besides fixtures (those are in ``tests/conftest.py``).

Worker processes started with "spawn" import this package before they set Django up
(``workers``, ``refresh_workers``): nothing here may touch settings or models at import time.
"""
