"""Command-line doors into `tlt.stages`, with TLT v1's command names and flags."""
