"""The `oddstore` command-line client: replay JSON Lines into ingest, simulate scrapers."""
