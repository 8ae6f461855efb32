"""Event RNN machinery on tiny random models: encoding, torch→ONNX parity,
training steps, generation and scoring through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: threads only add overhead

from mtools.errors import UsageError  # noqa: E402
from mtools.models.encoding import LookbackEncoding, melody_event_ids, melody_ids_to_events  # noqa: E402
from mtools.models.sequence import EventRnn, SearchOptions, generate, score_sequences  # noqa: E402
from mtools.runtime import load_session  # noqa: E402
from mtools.training.export import card_hyperparameters, export_event_rnn, graph_names, parity_error  # noqa: E402
from mtools.training.loop import INTERRUPTED, CropSampler, TrainConfig, Trainer, \
    load_checkpoint  # noqa: E402
from mtools.training.tasks import Example  # noqa: E402
from mtools.training.nets import EventLSTM  # noqa: E402

LOOKBACK = LookbackEncoding(38, (16, 32), 5)


def loaded(model, path, encoding) -> EventRnn:
    """The exported `model` at `path` as the runtime loads it."""
    names_in, names_out = graph_names(model)
    session = load_session(path, inputs=names_in, outputs=names_out, device="cpu")
    hyper = card_hyperparameters(model)
    return EventRnn(session, shapes=hyper["state_shapes"], encoding=encoding,
                    step_only=hyper["step_only"])


def test_magenta_sizes():
    assert (LOOKBACK.input_size, LOOKBACK.num_classes) == (121, 40)
    assert (LookbackEncoding(38).input_size, LookbackEncoding(38).num_classes) == (38, 38)
    drums = LookbackEncoding(512, (), 6)
    assert (drums.input_size, drums.num_classes) == (518, 512)


def test_melody_ids_round_trip_and_range():
    events = np.array([60, -2, -1, 48, 83, -2])
    ids = melody_event_ids(events, 48, 84)
    assert ids.tolist() == [14, 0, 1, 2, 37, 0]
    assert melody_ids_to_events(ids, 48).tolist() == events.tolist()
    with pytest.raises(ValueError):
        melody_event_ids(np.array([84]), 48, 84)


def test_lookback_inputs_match_the_definition_step_by_step():
    rng = np.random.default_rng(0)
    bar = rng.integers(0, 38, 16)
    ids = np.concatenate([bar, bar, rng.integers(0, 38, 20)])
    rows = LOOKBACK.inputs(ids)
    for t in (0, 15, 16, 31, 40):
        row = rows[t]
        assert row[ids[t]] == 1 and row[:38].sum() == 1
        following = ids[t - 15] if t - 15 >= 0 else 0
        assert row[38 + following] == 1 and row[38:76].sum() == 1
        counter = [(t + 1) >> bit & 1 for bit in range(5)]
        assert row[114:119].tolist() == [1.0 if c else -1.0 for c in counter]
        assert row[119] == float(t >= 16 and ids[t] == ids[t - 16])
    assert rows.shape == (len(ids), 121)


def test_labels_prefer_the_farthest_repeat_and_decode_back():
    rng = np.random.default_rng(1)
    bar = rng.integers(1, 38, 16)
    ids = np.concatenate([bar, bar, bar, rng.integers(1, 38, 8)])
    labels = LOOKBACK.labels(ids)
    assert labels[15 - 1 + 1] == 38 + 0  # position 16 repeats 16 back (32 back not there yet)
    assert labels[32 - 1] == 38 + 1  # position 32 repeats both: the farthest wins
    for position in range(1, len(ids)):  # every label decodes to the true event
        decoded = LOOKBACK.decode(np.array([labels[position - 1]]), ids[None, :position])
        assert decoded[0] == ids[position]


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    model = EventLSTM(LOOKBACK.input_size, LOOKBACK.num_classes, hidden=16, layers=2).eval()
    path = tmp_path / "tiny.onnx"
    export_event_rnn(model, path)
    return model, loaded(model, path, LOOKBACK)


def test_onnx_export_matches_torch(tiny, tmp_path):
    model, _ = tiny
    assert parity_error(model, tmp_path / "tiny.onnx") < 1e-5


def test_generation_is_seeded_batched_and_keeps_the_primer(tiny):
    _, rnn = tiny
    primer = np.array([14, 0, 1, 16])
    options = SearchOptions(temperature=1.0)
    a = generate(rnn, primer, 20, num_outputs=3, options=options, rng=np.random.default_rng(5))
    b = generate(rnn, primer, 20, num_outputs=3, options=options, rng=np.random.default_rng(5))
    assert a.shape == (3, 24) and np.array_equal(a, b)
    assert (a[:, :4] == primer).all() and ((a >= 0) & (a < 38)).all()
    assert len({tuple(row) for row in a}) > 1


def test_the_primer_runs_once_for_every_output(tiny):
    # all outputs share the primer: one batch-1 call, its state copied to each row
    _, rnn = tiny
    primer = np.array([14, 0, 1, 16])
    batches = []
    run = rnn.run

    def spy(inputs, state):
        batches.append(inputs.shape[:2])
        return run(inputs, state)

    rnn.run = spy
    rows = generate(rnn, primer, 3, num_outputs=3, options=SearchOptions(beam_size=2),
                    rng=np.random.default_rng(5))
    assert batches == [(1, 4)] + [(6, 1)] * 3 and rows.shape == (3, 7)


def test_beam_search_finds_likelier_sequences_than_sampling(tiny):
    _, rnn = tiny
    primer = np.array([14])

    def mean_nll(options):
        rows = generate(rnn, primer, 16, num_outputs=8, options=options, rng=np.random.default_rng(2))
        nll, _, count = score_sequences(rnn, list(rows))
        return nll / count

    beam = SearchOptions(temperature=1.0, beam_size=4, branch_factor=4, steps_per_iteration=2)
    assert mean_nll(beam) < mean_nll(SearchOptions())


def _repeats_of_last_pitch(rows: np.ndarray, start: int) -> int:
    """New onsets (from position start) with the pitch of the note before them."""
    count = 0
    for row in rows:
        pitched = [(t, e) for t, e in enumerate(row) if e >= 2]
        count += sum(b == a for (_, a), (t, b) in zip(pitched, pitched[1:]) if t >= start)
    return count


def test_a_repeat_bias_steers_generation(tiny):
    _, rnn = tiny
    primer = np.array([14, 0, 16])
    options = SearchOptions(temperature=1.0)
    rows = {}
    for bias in (0.0, -60.0, 6.0):
        rnn.repeat_bias = bias
        rows[bias] = generate(rnn, primer, 120, num_outputs=6, options=options,
                              rng=np.random.default_rng(4))
    base, never, often = (_repeats_of_last_pitch(rows[b], 3) for b in (0.0, -60.0, 6.0))
    assert never == 0 < base < often
    rnn.repeat_bias = -60.0  # beams too: the bias follows each row through branching
    beam = SearchOptions(beam_size=3, branch_factor=2, steps_per_iteration=3)
    for seed in range(6):
        searched = generate(rnn, primer, 45, num_outputs=2, options=beam,
                            rng=np.random.default_rng(seed))
        assert _repeats_of_last_pitch(searched, 3) == 0


def test_scoring_adds_the_repeat_bias_to_the_classes_repeating_the_last_pitch(tiny):
    from mtools.models.sampling import log_softmax

    _, rnn = tiny
    rng = np.random.default_rng(6)
    ids = np.concatenate([[0, 0], rng.integers(0, 38, 60)])
    ids[40:56] = ids[24:40]  # a repeated bar, so lookback classes decode to pitches
    logits = rnn.run(rnn.encode(ids[None, :-1], 0, None), rnn.zero_state(1))[0][0]
    bias, want = -1.5, 0.0
    for t in range(len(ids) - 1):
        pitches = [e for e in ids[:t + 1] if e >= 2]
        decodes = list(range(38)) + [ids[t + 1 - d] if t + 1 - d >= 0 else 0 for d in (16, 32)]
        shifted = logits[t] + bias * np.array([bool(pitches) and e == pitches[-1] for e in decodes])
        log_probs = log_softmax(shifted)
        want -= np.logaddexp.reduce([log_probs[c] for c, e in enumerate(decodes) if e == ids[t + 1]])
    rnn.repeat_bias = bias
    nll, _, count = score_sequences(rnn, [ids])
    rnn.repeat_bias = 0.0
    assert count == len(ids) - 1 and nll == pytest.approx(want, rel=1e-5)
    assert score_sequences(rnn, [ids])[0] != pytest.approx(want, rel=1e-3)


def test_scoring_in_onnx_equals_the_torch_loss(tiny):
    model, rnn = tiny
    basic = LookbackEncoding(38)
    torch.manual_seed(1)
    plain = EventLSTM(38, 38, hidden=16, layers=1).eval()
    ids = np.random.default_rng(3).integers(0, 38, 30)
    with torch.no_grad():
        x = torch.from_numpy(basic.inputs(ids[:-1]))[None]
        logits, _, _ = plain(x, *plain.zero_state(1))
        want = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(basic.labels(ids)),
                                                 reduction="sum")
    import tempfile, pathlib
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "plain.onnx"
        export_event_rnn(plain, path)
        nll, _, count = score_sequences(loaded(plain, path, basic), [ids])
    assert count == 29 and nll == pytest.approx(float(want), rel=1e-4)


def test_training_lowers_loss_checkpoints_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 38, 16)
    examples = [Example(np.tile(pattern, 6)) for _ in range(8)]
    config = TrainConfig(batch_size=8, crop_steps=32, eval_every=20, max_steps=60, valid_crops=8,
                         learning_rate=1e-2)
    encoding = LookbackEncoding(38)
    model = EventLSTM(38, 38, hidden=32, layers=1, dropout=0.0)
    sampler = CropSampler(examples, encoding, config)
    trainer = Trainer(model, model.kind, sampler, sampler, config, tmp_path)
    history = trainer.run()
    assert history.step == 60 and history.log[-1]["valid"] < history.log[0]["valid"] < 3.7
    assert history.stopped == "max steps"
    restored, state = load_checkpoint(tmp_path / "best.pt")
    assert state["history"]["best_step"] == history.best_step
    again = Trainer(EventLSTM(38, 38, hidden=32, layers=1, dropout=0.0), model.kind, sampler,
                    sampler, TrainConfig(**{**config.__dict__, "max_steps": 80}), tmp_path)
    assert again.history.step == 60 and again.run().step == 80
    with pytest.raises(UsageError, match="different network.*") as caught:  # e.g. new inputs
        Trainer(EventLSTM(40, 38, hidden=32, layers=1, dropout=0.0), model.kind, sampler,
                sampler, config, tmp_path)
    assert "--fresh" in caught.value.hint
    (tmp_path / "last.pt").unlink()  # brought back without it: best.pt's weights and history
    alone = Trainer(EventLSTM(38, 38, hidden=32, layers=1, dropout=0.0), model.kind, sampler,
                    sampler, config, tmp_path)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert alone.history.step == best["history"]["step"]
    assert all(torch.equal(alone.model.state_dict()[k], v) for k, v in best["state_dict"].items())


def test_the_history_says_why_training_stopped(tmp_path):
    examples = [Example(np.arange(64) % 38) for _ in range(4)]
    config = TrainConfig(batch_size=4, crop_steps=16, eval_every=5, max_steps=1000, valid_crops=4,
                         learning_rate=0.0, patience=2)  # nothing learns: no validation gains
    sampler = CropSampler(examples, LookbackEncoding(38), config)

    def trainer(data=sampler, run_dir=tmp_path, **changes):
        return Trainer(EventLSTM(38, 38, hidden=8, layers=1, dropout=0.0), "event_lstm", data,
                       sampler, TrainConfig(**{**config.__dict__, **changes}), run_dir)

    assert trainer().run().stopped == "early stop"
    assert trainer(max_steps=0).run().stopped == "early stop"  # --export-only keeps the reason
    assert trainer(patience=10, max_minutes=0.0).run().stopped == "max minutes"

    class Killed(Exception):
        pass

    class DiesAtStep7:  # training data that kills the run between checkpoints
        def __init__(self):
            self.calls = 0

        def batch(self, rng):
            self.calls += 1
            if self.calls == 7:
                raise Killed
            return sampler.batch(rng)

    with pytest.raises(Killed):
        trainer(DiesAtStep7(), tmp_path / "killed", patience=10).run()
    _, saved = load_checkpoint(tmp_path / "killed" / "last.pt")  # step 5's validation wrote it
    assert saved["history"]["step"] == 5 and saved["history"]["stopped"] == INTERRUPTED
    resumed = trainer(run_dir=tmp_path / "killed", patience=10, max_steps=8).run()
    assert resumed.step == 8 and resumed.stopped == "max steps"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_run_keeps_its_steps_before_the_first_checkpoint(tmp_path, how):
    import os
    import signal

    examples = [Example(np.arange(64) % 38) for _ in range(4)]
    config = TrainConfig(batch_size=4, crop_steps=16, eval_every=1000, max_steps=1000,
                         valid_crops=4, checkpoint_every_s=3600)
    sampler = CropSampler(examples, LookbackEncoding(38), config)

    class StoppedAtStep4:  # the user's Ctrl-C (or a TERM) arrives while step 4 is fetched
        def __init__(self):
            self.calls = 0

        def batch(self, rng):
            self.calls += 1
            if self.calls == 4:
                if how == "ctrl-c":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGTERM)
            return sampler.batch(rng)

    trainer = Trainer(EventLSTM(38, 38, hidden=8, layers=1, dropout=0.0), "event_lstm",
                      StoppedAtStep4(), sampler, config, tmp_path)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert signal.getsignal(signal.SIGTERM) is previous  # TERM is left as it was
    _, saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["history"]["step"] == 3 and saved["history"]["stopped"] == INTERRUPTED
