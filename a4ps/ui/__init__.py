"""Kivy Entropic UI (organ 12): a separate process that shows and steers the backend over ZeroMQ.

Entry point: `a4ps.ui.app.run_ui(settings)`. Nothing is built at import time.
"""
