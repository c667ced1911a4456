"""Test helpers: local stand-ins for remote services."""
