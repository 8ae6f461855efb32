"""attention_rnn: Magenta's key-melody inputs and the attention network,
its one-step ONNX export, and continuing a primer with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clirunner import run  # noqa: E402
from tiny_models import tiny_event_model  # noqa: E402
from mtools.models.key_encoding import KeyMelodyEncoding  # noqa: E402
from mtools.training.export import export_event_rnn, parity_error  # noqa: E402
from mtools.training.nets import AttentionLSTM  # noqa: E402

KEY = KeyMelodyEncoding(38, (16, 32), 7)


def test_the_magenta_sizes():
    assert (KEY.input_size, KEY.num_classes) == (74, 40)


def test_inputs_follow_the_definition():
    # C4 (id 14) held, note off, E4 (id 18), then G4 (id 21): C major so far
    ids = np.array([14, 0, 1, 18, 0, 21, 0, 0] + [0] * 8)
    rows = KEY.inputs(ids)
    assert rows.shape == (16, 74)
    assert rows[0, 12] == 1 and rows[0, 36] == 1 and rows[0, 38] == 1  # C4 sounds, attack
    assert rows[1, 38] == 0 and rows[1, 12] == 1  # held: no attack
    assert rows[2, 37] == 1 and rows[2, :36].sum() == 0  # note off: silence
    assert rows[3, 16] == 1 and rows[3, 39] == 1  # E4, ascending
    assert rows[15, 49] == 1 and rows[14, 49] == 0  # the next step starts bar 2
    keys = rows[5, 50:62]
    assert keys[0] == 1 and keys[1] == 0  # C, E, G: C major is among the best keys
    assert np.array_equal(KEY.inputs(ids, 5), rows[5:])  # a late start keeps the history


def test_key_inputs_read_a_step_at_a_time_match_the_whole_sequence():
    # generate appends one step per call and carries the key estimate;
    # training and scoring read whole sequences. Both must give the same rows,
    # also after beams are reordered (take).
    rng = np.random.default_rng(0)
    ids = rng.choice(38, size=(4, 70), p=rng.dirichlet(np.full(38, 0.3)))
    whole = KEY.inputs(ids, 0, offset=3)
    rows, memory = KEY.inputs_from(ids[:, :5], 0, offset=3)
    for t in range(5, 70):
        row, memory = KEY.inputs_from(ids[:, :t + 1], t, memory, offset=3)
        rows = np.concatenate([rows, row], axis=1)
    assert np.array_equal(rows, whole)
    order = np.array([2, 2, 0])
    row, _ = KEY.inputs_from(ids[order], 69, KEY.inputs_from(ids[:, :69], 0)[1].take(order))
    assert np.array_equal(row[:, 0], KEY.inputs(ids[order], 69)[:, 0])


def test_training_crops_of_long_pieces_match_the_whole_piece_read_from_its_start():
    # the sampler encodes a batch of crops together from remembered key
    # states (or, for transposed pieces, from each piece's start); both must
    # give the rows and labels of the whole piece read from its beginning
    from mtools.training.loop import CropSampler, TrainConfig
    from mtools.training.tasks import Example

    rng = np.random.default_rng(1)
    pieces = [Example(rng.choice(38, size=n, p=rng.dirichlet(np.full(38, 0.3))))
              for n in (20, 70, 300, 1000)]
    chosen = [(pieces[i], start) for i, start in
              ((0, 0), (1, 16), (2, 0), (2, 160), (3, 48), (3, 960), (1, 64), (3, 16))]
    config = TrainConfig(batch_size=8, crop_steps=64, align=16)
    plain = CropSampler(pieces, KEY, config)
    varied = CropSampler(pieces, KEY, config, augment=lambda rng, example: example)
    for sampler in (plain, plain, varied):  # twice: the second reads remembered states
        for (piece, start), (inputs, labels) in zip(chosen, sampler.crops(chosen)):
            end = min(len(piece.ids), start + 65)
            assert np.array_equal(inputs, KEY.inputs(piece.ids[:end - 1])[start:])
            assert np.array_equal(labels, KEY.labels(piece.ids[:end])[start:])
    assert len(plain._memories) == 4 and not varied._memories


def test_attention_export_runs_step_by_step_like_torch(tmp_path):
    torch.manual_seed(0)
    model = AttentionLSTM(74, 40, hidden=16, layers=2, attn_length=5, dropout=0.0).eval()
    path = tmp_path / "attention.onnx"
    export_event_rnn(model, path)
    assert parity_error(model, path) < 1e-5


def test_continue_with_a_tiny_attention_model(tmp_path):
    path = tiny_event_model(tmp_path, config="attention_rnn")
    args = ["continue", "--model", path, "--primer", "60 _ 62 _ 64 _ 65 _", "--bars", "1",
            "--seed", "3", "--to", "jsonl", "-n", "2", "--beam-size", "2", "--branch-factor", "2"]
    first, again = run(args), run(args)
    assert first.code == 0, first.stderr
    assert first.stdout == again.stdout and len(first.stdout.splitlines()) == 2
    notes = json.loads(first.stdout.splitlines()[0])["notes"]
    assert [n["pitch"] for n in notes[:4]] == [60, 62, 64, 65]


def test_a_whole_sequence_matches_one_step_at_a_time():
    # Training runs many steps per call (with the keys of stored outputs
    # cached); the export runs one step per call. Both must agree.
    torch.manual_seed(1)
    model = AttentionLSTM(74, 40, hidden=16, layers=2, attn_length=5, dropout=0.0).eval()
    inputs = torch.randn(2, 9, 74)
    state = tuple(torch.randn_like(t) * 0.5 for t in model.zero_state(2))
    with torch.no_grad():
        whole, *whole_state = model(inputs, *state)
        steps = []
        for t in range(inputs.shape[1]):
            logits, *state = model(inputs[:, t:t + 1], *state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, atol=1e-5, rtol=1e-5)
    for got, want in zip(state, whole_state):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def ring_rnn(model, path):
    """The EventRnn of an exported attention network, as a card would load it."""
    from mtools.models.sequence import EventRnn, state_shapes
    from mtools.runtime import load_session
    from mtools.training.export import card_hyperparameters, graph_names

    names_in, names_out = graph_names(model)
    hyper = card_hyperparameters(model)
    return EventRnn(load_session(path, inputs=names_in, outputs=names_out, device="cpu"),
                    shapes=state_shapes(model.config, model.STATE_NAMES), encoding=KEY,
                    step_only=True, ring=tuple(hyper.get("ring_states", ())))


def test_a_ring_export_runs_past_its_slots_and_through_beam_reordering_like_torch(tmp_path):
    # The graph outputs only the pushed step and the runtime writes it over
    # the oldest slot: after more steps than slots, and after beams are
    # reordered (take), the logits still match torch's shifting network.
    from mtools.models.sequence import RING_STEP

    torch.manual_seed(2)
    model = AttentionLSTM(74, 40, hidden=16, layers=2, attn_length=5, dropout=0.0).eval()
    path = tmp_path / "attention.onnx"
    export_event_rnn(model, path)
    rnn = ring_rnn(model, path)
    assert rnn.ring == ("attention_states", "attention_keys")
    inputs = torch.randn(3, 13, 74)
    rows = np.array([2, 0, 0])
    with torch.no_grad():
        first, *state = model(inputs[:, :7], *model.zero_state(3))
        h, c, *attention = state  # LSTM states are (layers, batch, hidden)
        state = [h[:, rows], c[:, rows], *(s[rows] for s in attention)]
        then, *_ = model(inputs[rows, 7:], *state)
    got_first, ring = rnn.run(inputs[:, :7].numpy(), rnn.zero_state(3))
    kept = rnn.take(ring, rows)
    got_then, ring = rnn.run(inputs[rows, 7:].numpy(), kept)
    np.testing.assert_allclose(got_first, first.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_then, then.numpy(), atol=1e-5)
    assert ring[RING_STEP] == 13


def test_an_old_shifting_export_is_rewritten_into_a_ring_with_its_card(tmp_path):
    from builders import write_random_tunes

    from mtools.errors import ModelNotFoundError, UsageError
    from mtools.models.registry import resolve_model, write_card
    from mtools.models.sequence import EventRnn
    from mtools.training.export import card_hyperparameters, graph_names
    from mtools.training.quantize import measure
    from mtools.training.ring import ring_graph, ring_model
    from mtools.training.tasks import find_spec

    tunes = tmp_path / "tunes"
    tunes.mkdir()
    write_random_tunes(tunes)
    spec = find_spec("melody_rnn", "attention_rnn")
    torch.manual_seed(3)
    model = AttentionLSTM(spec.encoding.input_size, spec.encoding.num_classes, hidden=8,
                          layers=1, attn_length=5, dropout=0.0).eval()
    path = tmp_path / "model" / "melody_rnn-attention_rnn.onnx"
    path.parent.mkdir()
    names_in, shifted_out = shifting_export(model, path)
    hyper = card_hyperparameters(model)
    del hyper["ring_states"]
    write_card({"name": "melody_rnn", "config": "attention_rnn", "task": "continue",
                "inputs": names_in, "outputs": shifted_out, "hyperparameters": hyper,
                "encoding": spec.card_encoding, "description": "tiny random test model",
                "training": {"datasets": [str(tunes)]},
                "metrics": {"measured_by": "mtools train; reproduce: mtools eval X"}}, path)
    before = EventRnn.from_ref(resolve_model(str(path)), device="cpu")
    assert before.ring == ()
    assert parity_error(model, path) < 1e-5  # such a file still starts a run (--init-from)
    inputs = np.random.default_rng(0).normal(size=(2, 12, spec.encoding.input_size))
    want = before.run(inputs, before.zero_state(2))[0]
    figures = measure(path, [str(tunes)])
    sha = resolve_model(str(path)).card.sha256

    metrics = ring_model(path)
    ref = resolve_model(str(path))  # the card matches the new file
    after = EventRnn.from_ref(ref, device="cpu")
    assert after.ring == ("attention_states", "attention_keys")
    assert list(ref.card.outputs) == graph_names(model)[1]
    np.testing.assert_allclose(after.run(inputs, after.zero_state(2))[0], want, atol=1e-5)
    assert metrics["nll_per_step"] == pytest.approx(figures["nll_per_step"], abs=1e-4)
    assert metrics["measured_by"].endswith("reproduce: mtools eval X")
    assert ref.card.extra["ring"]["from_sha256"] == sha
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{path.stem}.json", path.name]
    with pytest.raises(UsageError, match="in a ring already"):
        ring_model(path)
    import subprocess
    import sys

    from mtools.errors import EXIT_USAGE

    again = subprocess.run([sys.executable, "-m", "mtools.training.ring", str(path)],
                           capture_output=True, text=True)  # the tool: one line, no traceback
    assert (again.returncode, again.stderr.splitlines()) == (
        EXIT_USAGE, [f"mtools.training.ring: {path} keeps its attention states in a ring already"])
    import onnx
    with pytest.raises(ValueError, match="not a shifting state"):
        ring_graph(onnx.load(str(path)), ["attention_states"])
    card = json.loads(path.with_suffix(".json").read_text())
    del card["hyperparameters"]["ring_states"]  # a card that lost its ring: refused, not a traceback
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelNotFoundError, match="not a shifting state"):
        ring_model(path)


def shifting_export(model, path):
    """Export `model` as mtools train did before rings: every state output
    whole (NAME_out), the stored outputs shifted inside the graph. Returns
    the graph's input and output names."""
    from mtools.training.export import export_onnx, graph_names

    names_in, names_out = graph_names(model, shifted=True)
    dynamic = {name: {0: "batch"} for name in names_in + names_out}
    dynamic.update({name: {1: "batch"} for name in ("state_h", "state_c", "state_h_out",
                                                    "state_c_out")})
    export_onnx(model, (torch.zeros(2, 1, model.config["input_size"]), *model.zero_state(2)),
                path, names_in, names_out, dynamic)
    return names_in, names_out


def test_a_ring_export_generates_what_a_shifting_one_does_through_beams_and_branches(tmp_path):
    # Beams branch and survive by copying rows (take): each copy must get
    # its own ring, in the right order, from the primer on.
    from mtools.models.sequence import EventRnn, SearchOptions, generate, state_shapes
    from mtools.runtime import load_session

    torch.manual_seed(7)
    model = AttentionLSTM(74, 40, hidden=16, layers=2, attn_length=5, dropout=0.0).eval()
    export_event_rnn(model, tmp_path / "ring.onnx")
    names_in, shifted_out = shifting_export(model, tmp_path / "shift.onnx")
    shifting = EventRnn(load_session(tmp_path / "shift.onnx", inputs=names_in,
                                     outputs=shifted_out, device="cpu"),
                        shapes=state_shapes(model.config, model.STATE_NAMES), encoding=KEY,
                        step_only=True)
    ring = ring_rnn(model, tmp_path / "ring.onnx")
    logits = {id(ring): [], id(shifting): []}
    for rnn in (ring, shifting):
        def logged(inputs, state, rnn=rnn, plain=rnn.run):
            out = plain(inputs, state)
            logits[id(rnn)].append(out[0])
            return out
        rnn.run = logged
    searches = (SearchOptions(beam_size=3, branch_factor=2, steps_per_iteration=2),
                SearchOptions(beam_size=2, branch_factor=2), SearchOptions())
    for primer in ([14], [14, 0, 16, 0, 18, 0, 19, 0, 21]):
        for options in searches:
            rows = [generate(rnn, np.array(primer), 13, num_outputs=4, options=options,
                             rng=np.random.default_rng(3)) for rnn in (ring, shifting)]
            assert np.array_equal(*rows), (primer, options)
    assert len(logits[id(ring)]) == len(logits[id(shifting)]) > 6 * 13
    for got, want in zip(logits[id(ring)], logits[id(shifting)]):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_only_a_shift_by_one_slot_is_rewritten_into_a_ring(tmp_path):
    import onnx
    from onnx import numpy_helper

    from mtools.training.ring import ring_graph

    model = AttentionLSTM(74, 40, hidden=8, layers=1, attn_length=5, dropout=0.0).eval()
    shifting_export(model, tmp_path / "shift.onnx")
    graph = onnx.load(str(tmp_path / "shift.onnx"))
    ring_graph(graph, ["attention_states"])  # the graph as exported: fine
    tampered = onnx.load(str(tmp_path / "shift.onnx"))
    maker = {out: node for node in tampered.graph.node for out in node.output}
    slicer = next(n for n in tampered.graph.node
                  if n.op_type == "Slice" and n.input[0] == "attention_states")
    start = maker[slicer.input[1]]  # a Constant node: keep every slot instead of dropping one
    start.attribute[0].t.CopyFrom(numpy_helper.from_array(
        numpy_helper.to_array(start.attribute[0].t) * 0, start.attribute[0].t.name))
    with pytest.raises(ValueError, match="not a shifting state"):
        ring_graph(tampered, ["attention_states"])


def test_slice_bounds_are_read_from_any_kind_of_constant():
    from onnx import helper, numpy_helper

    from mtools.training.ring import _constant

    graph = helper.make_graph([], "g", [], [], [numpy_helper.from_array(np.array([1]), "init")])
    nodes = {"ints": helper.make_node("Constant", [], ["ints"], value_ints=[1, 2]),
             "int": helper.make_node("Constant", [], ["int"], value_int=3),
             "tensor": helper.make_node("Constant", [], ["tensor"],
                                        value=numpy_helper.from_array(np.array([4]))),
             "float": helper.make_node("Constant", [], ["float"], value_float=1.0)}
    assert [None if v is None else v.tolist() for v in
            (_constant(graph, nodes, n) for n in ("init", "ints", "int", "tensor", "float", "x"))] \
        == [[1], [1, 2], [3], [4], None, None]
