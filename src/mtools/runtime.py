"""ONNX Runtime sessions: the one place in mtools that creates them.

Everything about running a graph lives here: which execution provider
(CUDA or CPU) a session uses, how many threads it gets, and checking that a
graph has the input and output names its model code expects.

`onnxruntime` is imported lazily, inside functions, so that `mtools --help`
and every command that runs no model never pay for it (a test checks this).

ONNX Runtime is noisy by default in ways that break mtools' contract that
data goes to stdout and stderr holds at most one readable line per error:

- asked for CUDA where the CUDA libraries are missing, it logs two coloured
  lines on stderr and silently falls back to the CPU;
- when creating a session raises, its Python wrapper *prints* an "EP Error"
  banner on stdout (our data stream) and retries on the CPU;
- importing a GPU build where CUDA is missing may emit a Python warning.

So this module probes CUDA itself before asking for it, raises ORT's log
severity to fatal-only (every error that matters reaches us as a Python
exception and the CLI reports it once), turns off ORT's own fallback and
checks after creating a session which provider it really got.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mtools.errors import ModelNotFoundError, MtoolsError, RuntimeUnavailableError, UsageError

if TYPE_CHECKING:  # numpy is only needed once a session exists
    import numpy as np

DEVICE_ENV = "MTOOLS_DEVICE"
THREADS_ENV = "MTOOLS_THREADS"
DEVICES = ("auto", "cpu", "cuda")

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
_PROVIDER_DEVICE = {CPU_PROVIDER: "cpu", CUDA_PROVIDER: "cuda"}

# ORT logging severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_ORT_LOG_FATAL = 4

_INSTALL_HINT = "pip install 'mtools[cpu]' (or 'mtools[gpu]' for CUDA)"
_GPU_HINT = "use --device cpu, or install what is missing"

# Set once a CUDA session attempt falls back or fails, so that later "auto"
# sessions in this process go straight to the CPU without retrying.
_late_cuda_failure: list[str] = []


TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def _import_ort() -> Any:
    """Import onnxruntime quietly; raise RuntimeUnavailableError if absent.
    ONNX Runtime's own telemetry (1.29 on: a device id written under
    ~/.cache/Microsoft, events sent to Microsoft, a warning on stderr when
    $HOME is read-only) is off unless $ORT_DISABLE_TELEMETRY says otherwise:
    a command-line tool should neither phone home nor write outside its
    own cache unasked."""
    os.environ.setdefault(TELEMETRY_ENV, "1")
    try:
        with warnings.catch_warnings():
            # GPU builds may warn at import when CUDA libraries are missing;
            # the probe below reports that in its own words when it matters.
            warnings.simplefilter("ignore")
            import onnxruntime
    except ImportError as error:
        if _interrupted(error):  # Ctrl-C while its extension loaded, not a missing install
            raise KeyboardInterrupt from None
        raise RuntimeUnavailableError(
            f"ONNX Runtime is not installed ({error})", hint=_INSTALL_HINT
        ) from error
    onnxruntime.set_default_logger_severity(_ORT_LOG_FATAL)
    return onnxruntime


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind `error` (a C extension that is
    interrupted while it loads reports an ImportError caused by it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


# ---------------------------------------------------------------- device choice


def _requested_device(requested: str | None) -> str:
    """Normalise a --device value (None → $MTOOLS_DEVICE → "auto")."""
    source = "--device"
    if requested is None:
        requested = os.environ.get(DEVICE_ENV, "").strip() or "auto"
        source = DEVICE_ENV
    value = requested.strip().lower()
    if value not in DEVICES:
        raise UsageError(
            f"{source} must be one of {', '.join(DEVICES)}, not {requested!r}"
        )
    return value


def resolve_device(requested: str | None = None) -> str:
    """Choose where models run: returns "cpu" or "cuda".

    `requested` is "auto", "cpu", "cuda" or None; None reads $MTOOLS_DEVICE
    and defaults to "auto". "auto" picks CUDA only when it can really run
    (see `cuda_unavailable_reason`); "cuda" where it cannot raises
    RuntimeUnavailableError saying why. A bad value raises UsageError.
    Probing prints nothing and its result is cached for the process.
    """
    value = _requested_device(requested)
    if value == "cpu":
        return "cpu"
    reason = cuda_unavailable_reason()
    if reason is None:
        return "cuda"
    if value == "cuda":
        raise RuntimeUnavailableError(f"CUDA cannot run here: {reason}", hint=_GPU_HINT)
    return "cpu"


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot run in this process, or None when it can.

    Checks, cheapest first and without initialising CUDA (a process that
    called cuInit cannot hand CUDA to children it forks, e.g. `--jobs N`):
    the ONNX Runtime build has a CUDA provider; the NVIDIA driver library
    loads and, where NVML answers, sees a GPU; ORT's CUDA provider library
    loads with all the CUDA libraries it links against. A CUDA session that
    later falls back to the CPU anyway is remembered here too.
    """
    if _late_cuda_failure:
        return _late_cuda_failure[0]
    return _probe_cuda()


@functools.lru_cache(maxsize=None)
def _probe_cuda() -> str | None:
    ort = _import_ort()
    if CUDA_PROVIDER not in ort.get_available_providers():
        return "the installed ONNX Runtime is a CPU-only build; pip install 'mtools[gpu]' replaces it"
    if sys.platform == "darwin":
        return "CUDA does not run on macOS"
    return _probe_driver() or _probe_provider_library(ort)


def _probe_driver() -> str | None:
    """Check the NVIDIA driver: libcuda loads and NVML counts ≥ 1 GPU."""
    driver = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(driver)
    except OSError:
        return f"no NVIDIA driver ({driver} cannot be loaded)"
    nvml_name = "nvml.dll" if sys.platform == "win32" else "libnvidia-ml.so.1"
    try:
        nvml = ctypes.CDLL(nvml_name)
    except OSError:
        return None  # cannot count GPUs; the session check below decides
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint(0)
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 and count.value == 0:
            return "the NVIDIA driver sees no GPU"
    finally:
        nvml.nvmlShutdown()
    return None


def _probe_provider_library(ort: Any) -> str | None:
    """Load ORT's CUDA provider library the way ORT does, to learn early and
    quietly whether the CUDA/cuBLAS libraries it links against are present."""
    capi = os.path.join(os.path.dirname(ort.__file__), "capi")
    if sys.platform == "win32":
        shared, cuda = "onnxruntime_providers_shared.dll", "onnxruntime_providers_cuda.dll"
    else:
        shared, cuda = "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"
    if not os.path.isfile(os.path.join(capi, cuda)):
        return None  # a layout we do not know; the session check decides
    error = _load_provider_library(capi, shared, cuda)
    if error and hasattr(ort, "preload_dlls"):
        # CUDA from pip (nvidia-* wheels) is found only once ORT preloads it;
        # preload_dlls prints its failures on stdout, which is our data.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        error = _load_provider_library(capi, shared, cuda)
    if error is None:
        return None
    built_for = getattr(ort, "cuda_version", "") or "?"
    return f"a library that ONNX Runtime's CUDA provider (built for CUDA {built_for}) needs is missing: {error}"


def _load_provider_library(capi: str, shared: str, cuda: str) -> str | None:
    """dlopen the provider libraries; return the loader's complaint about a
    missing file, or None (also when the failure is not a missing file)."""
    try:
        ctypes.CDLL(os.path.join(capi, shared), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(os.path.join(capi, cuda))
    except OSError as error:
        text = str(error)
        missing = "cannot open shared object file" in text or "could not be found" in text
        return text if missing else None
    return None


# ---------------------------------------------------------------- threads


def resolve_threads(threads: int | None = None) -> int:
    """Intra-op threads for a session: `threads`, else $MTOOLS_THREADS, else
    0, which lets ONNX Runtime choose (one per physical core). Negative or
    non-integer values raise UsageError."""
    source = "--threads"
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return 0
        source = THREADS_ENV
        try:
            threads = int(text)
        except ValueError:
            raise UsageError(f"{THREADS_ENV} must be a whole number, not {text!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UsageError(f"{source} must be a whole number ≥ 0, not {threads!r}")
    return threads


def _session_options(ort: Any, threads: int) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_LOG_FATAL
    options.intra_op_num_threads = threads
    # One inter-op thread: sessions run sequentially (ORT's default mode, in
    # which the inter-op pool is idle anyway), our graphs are chains with
    # little branch parallelism, and batch work is parallelised per file by
    # processes (`--jobs`, xargs -P), where extra pools only oversubscribe.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Same input, same provider → same output, bit for bit (`--seed`).
    options.use_deterministic_compute = True
    return options


# ---------------------------------------------------------------- sessions

# cuDNN's exhaustive search benchmarks convolution algorithms at load and may
# pick differently from run to run; the heuristic choice is repeatable.
_CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint64)": "uint64", "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}


class Session:
    """One ONNX graph ready to run, its input/output names checked at load.

    Made by `load_session`. `provider` is the ONNX Runtime provider that runs
    it ("CUDAExecutionProvider" or "CPUExecutionProvider"), `device` the same
    as "cuda"/"cpu". `input_names`/`output_names` are the names the caller
    asked for, in the caller's order.
    """

    def __init__(self, inner: Any, *, label: str, inputs: Sequence[str], outputs: Sequence[str]):
        self._inner = inner
        self.label = label
        self.input_names = tuple(inputs)
        self.output_names = tuple(outputs)
        self.provider: str = inner.get_providers()[0]
        _check_names(
            label,
            [node.name for node in inner.get_inputs()],
            [node.name for node in inner.get_outputs()],
            self.input_names,
            self.output_names,
        )

    @property
    def device(self) -> str:
        """"cuda" or "cpu": where this session's graph runs."""
        return _PROVIDER_DEVICE.get(self.provider, self.provider)

    @property
    def input_shapes(self) -> dict[str, tuple[int | str | None, ...]]:
        """Each graph input's shape: ints for fixed dims, the symbolic name
        (e.g. "batch") or None for dynamic ones."""
        return {node.name: tuple(node.shape) for node in self._inner.get_inputs()}

    @property
    def input_types(self) -> dict[str, np.dtype]:
        """Each graph input's numpy dtype (object for non-numeric tensors)."""
        import numpy as np

        return {
            node.name: np.dtype(_ORT_TYPES.get(node.type, "object"))
            for node in self._inner.get_inputs()
        }

    def run(self, feeds: Mapping[str, np.ndarray],
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph once. `feeds` maps every input name to an array of
        the graph's dtype and shape; returns the expected outputs by name,
        or only `outputs` (then only the nodes they need are run).

        A feed that is missing or unknown is a bug in the caller and raises
        ValueError; a failure inside ONNX Runtime raises MtoolsError.
        """
        missing = [name for name in self.input_names if name not in feeds]
        unknown = [name for name in feeds if name not in self.input_names]
        if missing or unknown:
            raise ValueError(f"{self.label}: missing feeds {missing}, unknown feeds {unknown}")
        wanted = list(self.output_names if outputs is None else outputs)
        if not set(wanted) <= set(self.output_names):
            raise ValueError(f"{self.label}: unknown outputs {sorted(set(wanted) - set(self.output_names))}")
        try:
            values = self._inner.run(wanted, dict(feeds))
        except Exception as error:
            if not _is_ort_error(error):
                raise
            raise MtoolsError(f"running model {self.label} failed: {error}") from error
        return dict(zip(wanted, values))

    def __repr__(self) -> str:
        return f"Session({self.label!r}, provider={self.provider!r})"


def load_session(
    path_or_bytes: str | os.PathLike[str] | bytes,
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    device: str | None = None,
    threads: int | None = None,
) -> Session:
    """Load an ONNX graph from a file path (or serialized bytes) to run it.

    `inputs` must be exactly the graph's input names and `outputs` among its
    output names, else ModelNotFoundError names the difference. `device` is
    as for `resolve_device` (None → $MTOOLS_DEVICE → "auto"); `threads` as
    for `resolve_threads`. A file ORT cannot load raises ModelNotFoundError;
    "cuda" where CUDA cannot run raises RuntimeUnavailableError.
    """
    ort = _import_ort()
    requested = _requested_device(device)
    chosen = resolve_device(requested)
    options = _session_options(ort, resolve_threads(threads))
    if isinstance(path_or_bytes, bytes):
        model: str | bytes = path_or_bytes
        label = "(model given as bytes)"
    else:
        model = label = os.fspath(path_or_bytes)
        if not os.path.isfile(model):
            raise ModelNotFoundError(f"no model file at {model}")
    if chosen == "cuda":
        inner = _create_cuda(ort, model, label, options, explicit=requested == "cuda")
    else:
        inner = _create(ort, model, label, options, [CPU_PROVIDER])
    return Session(inner, label=label, inputs=inputs, outputs=outputs)


def _create(ort: Any, model: str | bytes, label: str, options: Any, providers: list) -> Any:
    """Create an InferenceSession quietly; a graph ORT rejects raises
    ModelNotFoundError."""
    try:
        return _new_inference_session(ort, model, options, providers)
    except Exception as error:
        if not _is_ort_error(error):
            raise
        raise ModelNotFoundError(f"cannot load model {label}: {error}") from error


def _new_inference_session(ort: Any, model: str | bytes, options: Any, providers: list) -> Any:
    with warnings.catch_warnings():
        # e.g. "Specified provider ... is not in available provider names"
        warnings.simplefilter("ignore")
        # enable_fallback=0: on failure ORT would print a banner on stdout
        # and retry on the CPU; we decide about fallback ourselves.
        return ort.InferenceSession(model, options, providers=providers, enable_fallback=0)


def _create_cuda(ort: Any, model: str | bytes, label: str, options: Any, *, explicit: bool) -> Any:
    """Create a CUDA session with CPU fallback for unsupported nodes; if CUDA
    does not take (ORT fell back, or raised while the CPU can load the
    model), remember why and return a CPU session, or raise if `explicit`."""
    providers = [(CUDA_PROVIDER, dict(_CUDA_OPTIONS)), CPU_PROVIDER]
    try:
        inner = _new_inference_session(ort, model, options, providers)
    except Exception as error:
        if not _is_ort_error(error):
            raise
        inner = _create(ort, model, label, options, [CPU_PROVIDER])  # bad model → raises
        reason = f"ONNX Runtime's CUDA provider failed: {error}"
    else:
        if inner.get_providers()[0] == CUDA_PROVIDER:
            return inner
        built_for = getattr(ort, "cuda_version", "") or "?"
        reason = (
            f"ONNX Runtime could not start its CUDA provider (built for CUDA {built_for}; "
            "are cuDNN and the CUDA libraries of that version installed?)"
        )
    if explicit:
        raise RuntimeUnavailableError(f"CUDA cannot run here: {reason}", hint=_GPU_HINT)
    if not _late_cuda_failure:
        _late_cuda_failure.append(reason)
    return inner


def _is_ort_error(error: BaseException) -> bool:
    """ORT's own exception classes, or the RuntimeError its providers raise."""
    return type(error).__module__.startswith("onnxruntime") or isinstance(error, RuntimeError)


def _check_names(
    label: str,
    graph_inputs: Sequence[str],
    graph_outputs: Sequence[str],
    inputs: Sequence[str],
    outputs: Sequence[str],
) -> None:
    """Graph inputs must equal `inputs` (as sets); graph outputs must include
    `outputs`. Otherwise raise ModelNotFoundError naming the difference."""
    problems = []
    missing = [name for name in inputs if name not in graph_inputs]
    unexpected = [name for name in graph_inputs if name not in inputs]
    missing_out = [name for name in outputs if name not in graph_outputs]
    if missing:
        problems.append(f"missing inputs {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected inputs {', '.join(unexpected)}")
    if missing_out:
        problems.append(f"missing outputs {', '.join(missing_out)}")
    if problems:
        raise ModelNotFoundError(
            f"model {label} does not have the graph names mtools expects: "
            f"{'; '.join(problems)} (the graph has inputs {', '.join(graph_inputs) or 'none'}"
            f" and outputs {', '.join(graph_outputs) or 'none'})",
            hint="re-export the model with this version of mtools, or pick another --model",
        )
