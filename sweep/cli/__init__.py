"""`python -m sweep` commands over finished runs: reproduce, best, report, ui."""
