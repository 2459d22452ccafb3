"""Replay memories: uint8 frame streams with n-step returns and prioritised sampling."""
