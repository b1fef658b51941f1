"""The bookmakers the pawaRisk UI calls platforms, by slug: one list for the gateway and the retention service."""

# In the order the old /api/health listed them, which the UI's sidebar expects (contract §18); the settings
# (contract §17) keep only these slugs in enabled_platforms.
PLATFORMS: tuple[str, ...] = ("sportybet", "betpawa", "bet9ja")
