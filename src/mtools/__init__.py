"""mtools: the Magenta family of music models as one pipeline-friendly CLI."""

__version__ = "0.1.0"
