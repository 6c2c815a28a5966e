"""Benchmarks of ``DjangoTokenStore`` against the Zoho SDK's stores and raw driver queries.

Run ``python -m benchmarks`` (``--quick`` for a smoke run); see ``benchmarks/README.md``.
"""
