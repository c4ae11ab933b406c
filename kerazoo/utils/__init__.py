"""Small utilities below everything else: atomic file writes, downloads, the `Registry` class, timing, what
this CPU offers, TensorFlow's log lines. They import nothing else of kerazoo."""
