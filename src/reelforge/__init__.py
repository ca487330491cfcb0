"""reelforge: one platform for generative-AI media work."""

__version__ = "0.1.0"
