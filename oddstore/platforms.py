"""Bookmakers by slug: what a slug may be, and the ones the pawaRisk UI calls platforms (one list for the gateway and
the retention service)."""

import re

# What ingest accepts as a bookmaker and a token may be granted.
BOOKMAKER_SLUG = re.compile(r"[a-z][a-z0-9_]{1,31}")

# In the order the old /api/health listed them, which the UI's sidebar expects (contract §18); the settings
# (contract §17) keep only these slugs in enabled_platforms.
PLATFORMS: tuple[str, ...] = ("sportybet", "betpawa", "bet9ja")
