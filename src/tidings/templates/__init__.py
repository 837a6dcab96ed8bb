"""templates service: templates per code, channel and language, with version history; rendering."""
