"""mtools.runtime: device choice, threads, sessions and their name checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
from tiny_onnx import TINY_INPUTS, TINY_OUTPUTS, tiny_rnn_model, tiny_rnn_reference, tiny_weights

from mtools import runtime
from mtools.errors import ModelNotFoundError, MtoolsError, RuntimeUnavailableError, UsageError

CUDA_BUILD = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test probes CUDA afresh, with no device/thread variables set."""
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    forget_cuda_probe()
    yield
    forget_cuda_probe()


def forget_cuda_probe():
    # A test may have replaced _probe_cuda with a plain function.
    getattr(runtime._probe_cuda, "cache_clear", lambda: None)()
    runtime._late_cuda_failure.clear()


@pytest.fixture
def tiny(tmp_path):
    """(path of a saved tiny RNN .onnx, its weights)."""
    weights = tiny_weights(seed=3)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_rnn_model(weights).SerializeToString())
    return path, weights


def load_tiny(path, **kwargs):
    return runtime.load_session(path, inputs=TINY_INPUTS, outputs=TINY_OUTPUTS, **kwargs)


def test_importing_runtime_and_registry_does_not_import_onnxruntime():
    code = (
        "import sys, mtools.runtime, mtools.models.registry; "
        "sys.exit(1 if 'onnxruntime' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_onnxruntime_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(RuntimeUnavailableError) as caught:
        runtime.resolve_device("auto")
    assert "mtools[cpu]" in str(caught.value) and "mtools[gpu]" in str(caught.value)


def test_ctrl_c_while_onnxruntime_loads_is_an_interruption(monkeypatch):
    # an extension interrupted while it loads reports an ImportError caused by the Ctrl-C
    class Interrupted:
        def find_spec(self, name, path=None, target=None):
            if name == "onnxruntime":
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt as interrupt:
                    raise ImportError("initialization failed") from interrupt
            return None

    monkeypatch.delitem(sys.modules, "onnxruntime")
    monkeypatch.setattr(sys, "meta_path", [Interrupted(), *sys.meta_path])
    with pytest.raises(KeyboardInterrupt):
        runtime._import_ort()


def test_onnxruntime_telemetry_is_off_unless_asked_for(monkeypatch):
    # (the process-wide effect is checked in test_pipes: a model run writes nothing into $HOME)
    monkeypatch.delenv(runtime.TELEMETRY_ENV, raising=False)
    runtime._import_ort()
    assert runtime.os.environ[runtime.TELEMETRY_ENV] == "1"
    monkeypatch.setenv(runtime.TELEMETRY_ENV, "0")
    runtime._import_ort()
    assert runtime.os.environ[runtime.TELEMETRY_ENV] == "0"


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [("cpu", None, "cpu"), (None, "cpu", "cpu"), (None, " CPU ", "cpu"), ("cpu", "cuda", "cpu")],
)
def test_resolve_device_reads_argument_then_environment(monkeypatch, requested, env, expected):
    if env is not None:
        monkeypatch.setenv(runtime.DEVICE_ENV, env)
    assert runtime.resolve_device(requested) == expected


def test_resolve_device_rejects_bad_values(monkeypatch):
    with pytest.raises(UsageError, match="--device"):
        runtime.resolve_device("gpu")
    monkeypatch.setenv(runtime.DEVICE_ENV, "tpu")
    with pytest.raises(UsageError, match=runtime.DEVICE_ENV):
        runtime.resolve_device(None)


@pytest.mark.skipif(
    runtime.cuda_unavailable_reason() is None, reason="CUDA really runs on this machine"
)
def test_without_cuda_auto_is_cpu_and_cuda_is_refused_quietly(capfd, tiny):
    assert runtime.resolve_device("auto") == "cpu"
    assert load_tiny(tiny[0], device="auto").device == "cpu"
    with pytest.raises(RuntimeUnavailableError, match="CUDA cannot run here"):
        runtime.resolve_device("cuda")
    with pytest.raises(RuntimeUnavailableError):
        load_tiny(tiny[0], device="cuda")
    assert capfd.readouterr() == ("", "")


def test_probe_reports_a_missing_driver_quietly(monkeypatch, capfd):
    monkeypatch.setattr(runtime.ctypes, "CDLL", _refuse_to_load)
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    reason = runtime.cuda_unavailable_reason()
    assert reason is not None and "NVIDIA driver" in reason
    assert runtime.resolve_device("auto") == "cpu"
    assert capfd.readouterr() == ("", "")


def _refuse_to_load(name, *args, **kwargs):
    raise OSError(f"{name}: cannot open shared object file: No such file or directory")


@pytest.mark.skipif(CUDA_BUILD, reason="needs an onnxruntime build without CUDA")
def test_cuda_session_that_falls_back_is_caught_quietly(monkeypatch, capfd, tiny):
    # Pretend the probe passed: ORT then gets asked for CUDA, cannot give
    # it, and we must notice from session.get_providers().
    monkeypatch.setattr(runtime, "_probe_cuda", lambda: None)
    assert runtime.resolve_device("auto") == "cuda"
    session = load_tiny(tiny[0], device="auto")
    assert session.provider == "CPUExecutionProvider" and session.device == "cpu"
    assert "could not start its CUDA provider" in runtime.cuda_unavailable_reason()
    assert runtime.resolve_device("auto") == "cpu"  # remembered
    with pytest.raises(RuntimeUnavailableError):
        load_tiny(tiny[0], device="cuda")
    assert capfd.readouterr() == ("", "")


def test_resolve_threads(monkeypatch):
    assert runtime.resolve_threads() == 0  # ORT's default
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.resolve_threads() == 3
    assert runtime.resolve_threads(1) == 1  # an argument beats the variable
    for bad in (-1, 1.5, True):
        with pytest.raises(UsageError):
            runtime.resolve_threads(bad)
    monkeypatch.setenv(runtime.THREADS_ENV, "many")
    with pytest.raises(UsageError, match=runtime.THREADS_ENV):
        runtime.resolve_threads()


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_session_matches_numpy_reference(tiny, threads):
    path, weights = tiny
    session = load_tiny(path, device="cpu", threads=threads)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4)).astype(np.float32)  # (batch, 4)
    state_h = rng.normal(size=(3, 8)).astype(np.float32)  # (batch, hidden)
    result = session.run({"x": x, "state_h": state_h})
    logits, state_out = tiny_rnn_reference(weights, x, state_h)
    assert list(result) == ["logits", "state_h_out"]
    np.testing.assert_allclose(result["logits"], logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(result["state_h_out"], state_out, atol=1e-5, rtol=1e-5)
    assert session.provider == "CPUExecutionProvider"


def test_session_introspection_and_bytes(tiny):
    session = runtime.load_session(
        tiny[0].read_bytes(), inputs=["state_h", "x"], outputs=["logits"], device="cpu"
    )
    assert session.input_shapes == {"x": ("batch", 4), "state_h": ("batch", 8)}
    assert session.input_types == {"x": np.dtype(np.float32), "state_h": np.dtype(np.float32)}
    out = session.run({"x": np.zeros((1, 4), np.float32), "state_h": np.zeros((1, 8), np.float32)})
    assert list(out) == ["logits"] and out["logits"].shape == (1, 5)


def test_wrong_graph_names_are_named(tmp_path):
    path = tmp_path / "renamed.onnx"
    model = tiny_rnn_model(tiny_weights(), inputs=("notes", "state_h"), outputs=("scores", "state_h_out"))
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelNotFoundError) as caught:
        load_tiny(path, device="cpu")
    message = str(caught.value)
    assert "missing inputs x" in message
    assert "unexpected inputs notes" in message
    assert "missing outputs logits" in message


def test_run_checks_feeds_and_wraps_ort_errors(tiny):
    session = load_tiny(tiny[0], device="cpu")
    with pytest.raises(ValueError, match="state_h"):
        session.run({"x": np.zeros((1, 4), np.float32)})
    with pytest.raises(MtoolsError, match="failed"):
        session.run({"x": np.zeros((1, 3), np.float32), "state_h": np.zeros((1, 8), np.float32)})


def test_unloadable_files_raise_model_not_found(tmp_path, capfd):
    with pytest.raises(ModelNotFoundError, match="no model file"):
        load_tiny(tmp_path / "absent.onnx", device="cpu")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe")
    with pytest.raises(ModelNotFoundError, match="cannot load model"):
        load_tiny(garbage, device="cpu")
    assert capfd.readouterr() == ("", "")
