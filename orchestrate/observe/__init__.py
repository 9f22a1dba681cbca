"""Watching a run: events, the monitor and its sinks, live display and reports."""
