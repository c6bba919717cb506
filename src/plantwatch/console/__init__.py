"""What people look at: the terminal live view (the web console comes later)."""

from plantwatch.console.live import MachineRow, Snapshot, render, run_live, run_log

__all__ = ["MachineRow", "Snapshot", "render", "run_live", "run_log"]
