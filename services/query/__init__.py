"""Query service: current odds from the cache, history from the new and legacy tables."""
