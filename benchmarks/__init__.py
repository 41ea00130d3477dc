"""Benchmarks for better-auth-obo: ``python -m benchmarks`` (or ``make bench``).

Prints one table: our hit path at 10 / 1,000 / 100,000 cached keys beside baselines run in
the same process (the TypeScript original's per-call database read on SQLite and
PostgreSQL, the MSAL Python ``get_accounts()`` + ``acquire_token_silent`` pattern, a dict
lookup), exchange counts under concurrency, a cold stampede against a slow token
endpoint, bytes per L1 entry, and the longest event-loop stall. Not collected by pytest;
the correctness parts are pytest tests in ``tests/test_exchange_counts.py``.
"""
