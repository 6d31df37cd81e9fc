"""The Textual terminal UI (`trickbag tui`): filled by the TUI issue."""
