"""Layer 0: what every other layer needs and that needs nothing of theirs.

Profiles (the named scales), atomic file writes and hashes, provenance records, and the one
resolution of the ``CAMTRAP_SSL_*`` paths.
"""
