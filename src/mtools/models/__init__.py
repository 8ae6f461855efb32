"""The music models: per model its encoding, ONNX inference and sampling;
`registry` finds bundled and user models with their cards.

Kept empty so that importing `mtools.models` costs nothing.
"""
