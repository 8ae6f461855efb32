"""The event RNN run several ways, for bench_continue.py: on ONNX Runtime
with the CLI's threads and with one, the same graph with its int8 weights
turned back into float32 ones (what shipping int8 gains or costs in
speed), and its network in torch eager (same dims) with torch's default
threads and with one. Every variant is an `EventRnn`, so
`mtools.models.sequence.generate` drives them all alike."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mtools.models.sequence import LSTM_STATES, EventRnn

ORT = "onnxruntime"
FLOAT32 = f"{ORT}, float32 weights"


def engines_for(ref, checkpoints: list[Path]) -> tuple[dict, str]:
    """The model as EventRnns by label, and where the torch weights come
    from. A graph that is not a plain LSTM (attention_rnn's extra states)
    gets no torch variants."""
    rnn = EventRnn.from_ref(ref, device="cpu")
    single = rnn.with_session(ref.load_session(device="cpu", threads=1))
    engines = {ORT: rnn, f"{ORT}, 1 thread": single}
    floats = float32_twin(ref, rnn)
    if floats is not None:
        engines[FLOAT32] = floats
    if set(rnn.shapes) != set(LSTM_STATES):
        return engines, "none (not a plain LSTM)"
    module, source = torch_module(rnn, checkpoints)
    engines["torch eager"] = torch_twin(rnn, module, torch_default_threads())
    engines["torch eager, 1 thread"] = torch_twin(rnn, module, 1)
    return engines, source


def float32_twin(ref, rnn: EventRnn) -> EventRnn | None:
    """`rnn` with the int8 weights of its graph as float32 (each weight
    (int8 − zero point) · scale, activations no longer quantized: the
    float export up to rounding), threads as the CLI's; None when the
    graph has float weights already."""
    import onnx

    from mtools import runtime
    from mtools.training.warm_start import dequantized, is_quantized

    model = onnx.load(str(ref.onnx_path))
    if not is_quantized(model.graph):
        return None
    session = runtime.load_session(dequantized(model).SerializeToString(),
                                   inputs=ref.card.inputs, outputs=ref.card.outputs,
                                   device="cpu")
    return rnn.with_session(session)


@functools.cache
def torch_default_threads() -> int:
    """torch's own intra-op thread count, read before any variant sets one."""
    import torch

    return torch.get_num_threads()


def network_flops(rnn: EventRnn) -> float | None:
    """Multiply-adds × 2 of one network step for one sequence (the LSTM
    layers' matrix products and the output layer); None when the graph is
    not a plain LSTM."""
    if set(rnn.shapes) != set(LSTM_STATES):
        return None
    dims = lstm_dims(rnn)
    hidden, layers = dims["hidden"], dims["layers"]
    gates = 4 * hidden * (dims["input_size"] + hidden) + (layers - 1) * 4 * hidden * 2 * hidden
    return 2.0 * (gates + hidden * dims["num_classes"])


def lstm_dims(rnn: EventRnn) -> dict[str, int]:
    """EventLSTM keyword arguments of a plain LSTM event RNN."""
    layers, _, hidden = rnn.shapes["state_h"]
    return {"input_size": rnn.encoding.input_size + rnn.control_size,
            "num_classes": rnn.encoding.num_classes, "hidden": hidden, "layers": layers}


def torch_module(rnn: EventRnn, checkpoints: list[Path]):
    """The network as a torch EventLSTM: from the checkpoint whose config
    matches the card's dims, else with random weights. Returns (module,
    "checkpoint NAME" or "random weights")."""
    import torch

    from mtools.training.nets import EventLSTM, build_module

    dims = lstm_dims(rnn)
    for path in checkpoints:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if all(state["config"].get(k) == v for k, v in dims.items()):
            module = build_module(state["kind"], state["config"])
            module.load_state_dict(state["state_dict"])
            return module.eval(), f"checkpoint `{path.parent.name}/{path.name}`"
    return EventLSTM(**dims, dropout=0.0).eval(), "random weights"


def torch_twin(rnn: EventRnn, module, threads: int) -> EventRnn:
    """An EventRnn like `rnn` whose `run` is `module` in torch eager with
    `threads` intra-op threads."""
    import torch

    class TorchEventRnn(EventRnn):
        def run(self, inputs, state):
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            tensors = [torch.from_numpy(np.ascontiguousarray(a, np.float32))
                       for a in (inputs, state["state_h"], state["state_c"])]
            with torch.inference_mode():
                logits, h, c = module(*tensors)
            return logits.numpy(), {"state_h": h.numpy(), "state_c": c.numpy()}

    return TorchEventRnn(None, shapes=rnn.shapes, encoding=rnn.encoding,
                         control_size=rnn.control_size, repeat_bias=rnn.repeat_bias)


# ONNX Runtime kernels that multiply by the weights (after its graph
# fusions and dynamic quantization): the work a bigger batch shares. A fused
# LSTM kernel also computes its gates, so in a plain LSTM graph nearly all
# of the step counts here.
WEIGHT_KERNELS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "Gemm",
                  "DynamicQuantizeLSTM", "LSTM")


def weight_share(path: Path, batch: int, calls: int = 200) -> tuple[float, float]:
    """ONNX Runtime's own profile of `calls` network steps at `batch` (zero
    inputs and state; threads as the CLI sets them): (kernel µs per step,
    share of it in the weight kernels above). The rest is work each sequence
    brings on its own, which a batch cannot share: attention over the stored
    outputs, separate gate and element-wise nodes, copies of the state."""
    import json
    import tempfile

    import onnxruntime

    from mtools.runtime import _session_options, resolve_threads

    options = _session_options(onnxruntime, resolve_threads())  # as the CLI's sessions
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "step")
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        if not all("batch" in item.shape for item in session.get_inputs()):
            raise ValueError(f"{path}: an input without a 'batch' dimension")
        feeds = {item.name: np.zeros([batch if dim == "batch" else dim if isinstance(dim, int)
                                      else 1 for dim in item.shape], np.float32)
                 for item in session.get_inputs()}
        for _ in range(calls):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [(event["args"].get("op_name", ""), event["dur"]) for event in events
               if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    total = sum(us for _, us in kernels) or 1
    weights = sum(us for op, us in kernels if op in WEIGHT_KERNELS)
    return total / calls, weights / total
