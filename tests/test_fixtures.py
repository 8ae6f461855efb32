"""Committed fixtures must equal what their generators write now."""

from tiny_onnx import SMOKE_DIR, write_smoke_fixture


def test_the_smoke_fixture_is_what_tiny_onnx_writes(tmp_path):
    write_smoke_fixture(tmp_path)
    for name in ("tiny_rnn.onnx", "tiny_rnn.json", "golden.json"):
        assert (tmp_path / name).read_bytes() == (SMOKE_DIR / name).read_bytes(), \
            f"{name} is stale: run python tests/tiny_onnx.py"
