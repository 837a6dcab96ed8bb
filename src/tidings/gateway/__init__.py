"""gateway service: the public entry point."""
