"""Shared pieces of the dashboard: session state, render helpers and charts. No torch here."""
