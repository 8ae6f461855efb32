"""Training: data sources and caches (`corpora`, numpy only), and the torch
modules, loops and exporters that need the `train` extra.

Import the submodules directly; this package imports nothing itself.
"""
