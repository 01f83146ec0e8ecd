"""Reporting: Table 2 and figures from a finished sweep directory (reads files only)."""
