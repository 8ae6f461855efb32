"""Onsets and Frames: the front end, labels, decoding, chunked inference,
export parity and `mtools transcribe` end to end on a tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builders import chord_notes, pedal
from clirunner import run
from mtools.io.audio import wav_bytes
from mtools.models.onsets_frames import OnsetsFrames
from mtools.models.registry import resolve_model
from mtools.models.transcription import HEADS, DecodeOptions, FrontEnd, KeySpace, \
    decode_notes, note_labels
from mtools.score import Note, make_score

torch = pytest.importorskip("torch")

FRONT_END, KEYS = FrontEnd(), KeySpace()
RATE = FRONT_END.sample_rate_hz


def tone(hz: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from tiny_models import tiny_transcriber

    return tiny_transcriber(tmp_path_factory.mktemp("of"))


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return OnsetsFrames.from_ref(resolve_model(str(tiny_path)), device="cpu")


def test_a_tone_lights_the_mel_band_of_its_frequency():
    mel = FRONT_END.log_mel(tone(440.0, 1.0))
    assert mel.shape == (FRONT_END.frames_for(RATE), FRONT_END.mel_bins)
    bank = FRONT_END.filterbank  # (fft bins, mel bins)
    bin_440 = round(440.0 * FRONT_END.fft_samples / RATE)
    middle = mel[len(mel) // 2]
    assert np.argmax(middle) in np.nonzero(bank[bin_440])[0]
    assert middle.max() - np.median(middle) > 8  # nats above the rest of the spectrum


def test_streaming_blocks_of_any_size_gives_the_whole_signal_mel():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 3 * RATE + 123).astype(np.float32)
    whole = FRONT_END.log_mel(audio)
    cuts = np.sort(rng.integers(0, len(audio), 7))
    streamed = np.concatenate(list(FRONT_END.stream(np.split(audio, cuts))))
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_labels_follow_the_notes_and_the_pedal():
    frame_s = FRONT_END.frame_s
    notes = chord_notes([60], 10 * frame_s, 20 * frame_s, velocity=127)
    notes += [Note(64, 64, 30 * frame_s, 32 * frame_s), Note(12, 90, 0.0, 1.0)]  # 12: off the keys
    score = make_score(notes, control_changes=pedal(0, 31 * frame_s, 40 * frame_s))
    labels = note_labels(score, 50, FRONT_END, KEYS)
    c4, e4 = 60 - KEYS.min_pitch, 64 - KEYS.min_pitch
    assert np.nonzero(labels["onset"][:, c4])[0].tolist() == [10]
    assert np.nonzero(labels["frame"][:, c4])[0].tolist() == list(range(10, 20))
    assert np.nonzero(labels["offset"][:, c4])[0].tolist() == [20]
    assert labels["velocity"][10, c4] == pytest.approx(1.0)
    assert np.nonzero(labels["frame"][:, e4])[0].tolist() == list(range(30, 40))  # held by the pedal
    assert labels["frame"].sum() == 20  # the note below the keyboard is left out
    unpedalled = note_labels(score, 50, FRONT_END, KEYS, sustain=False)
    assert np.nonzero(unpedalled["frame"][:, e4])[0].tolist() == [30, 31]


def test_decoding_perfect_predictions_gives_the_notes_back_on_the_frame_grid():
    frame_s = FRONT_END.frame_s
    notes = [Note(60, 100, 3 * frame_s, 9 * frame_s), Note(60, 50, 9 * frame_s, 12 * frame_s),
             Note(72, 80, 5 * frame_s, 6 * frame_s)]
    labels = note_labels(make_score(notes), 20, FRONT_END, KEYS)
    probs = {name: labels[name].astype(np.float32) for name in ("onset", "frame", "offset")}
    probs["velocity"] = labels["velocity"]
    decoded = decode_notes(probs, FRONT_END, KEYS)
    assert [(n.pitch, n.velocity) for n in decoded] == [(60, 100), (72, 80), (60, 50)]
    for got, want in zip(sorted(decoded, key=lambda n: n.start_s), notes[:1] + notes[2:] + notes[1:2]):
        assert got.start_s == pytest.approx(want.start_s) and got.end_s == pytest.approx(want.end_s)


def test_frames_without_an_onset_start_no_note():
    probs = {name: np.zeros((10, KEYS.keys), np.float32) for name in ("onset", "frame", "offset", "velocity")}
    probs["frame"][2:6, 40] = 0.9
    assert decode_notes(probs, FRONT_END, KEYS) == []


def onset_probs(*runs: tuple[int, int, int, float], frames: int = 30, keys=KEYS) -> dict:
    """Predictions with onset runs (pitch, first frame, frames, peak) whose
    frames sound for 6 frames after them."""
    probs = {name: np.zeros((frames, keys.keys), np.float32) for name in HEADS}
    for pitch, first, length, peak in runs:
        key = keys.index_of(Note(pitch, 80, 0.0, 1.0))
        probs["onset"][first:first + length, key] = np.linspace(0.35, peak, length)
        probs["frame"][first:first + length + 6, key] = 0.9
        probs["velocity"][first:first + length, key] = 0.6
    return probs


def test_a_weaker_onset_on_a_partial_of_a_starting_note_is_dropped_below_the_harmonic_threshold():
    probs = onset_probs((48, 5, 3, 0.9), (60, 6, 2, 0.5), (67, 4, 2, 0.5), (72, 7, 3, 0.8),
                        (64, 5, 2, 0.4), (76, 12, 2, 0.4), (50, 20, 2, 0.6), (62, 20, 2, 0.7),
                        (40, 20, 2, 0.9), (52, 23, 2, 0.5))
    def pitches(threshold):
        return sorted(n.pitch for n in decode_notes(probs, FRONT_END, KEYS, DecodeOptions(
            0.3, 0.3, harmonic_threshold=threshold)))
    everything = [40, 48, 50, 52, 60, 62, 64, 67, 72, 76]
    assert pitches(0.0) == pitches(0.3) == everything
    # 60 (octave) and 67 (twelfth) of 48 go; 72 (two octaves) is surer than 0.75; 64 is
    # no partial; 76 and 52 start 7 and 3 frames after 64 and 40; 62 is surer than 50.
    assert pitches(0.75) == [40, 48, 50, 52, 62, 64, 72, 76]
    assert pitches(0.85) == [40, 48, 50, 52, 62, 64, 76]


def test_a_dropped_onset_run_goes_whole_and_leaves_the_key_s_earlier_note_alone():
    probs = onset_probs((60, 2, 2, 0.9), (48, 14, 2, 0.9), (60, 14, 4, 0.5), frames=40)
    probs["frame"][:, KEYS.index_of(Note(60, 80, 0.0, 1.0))] = 0.0
    probs["frame"][2:12, KEYS.index_of(Note(60, 80, 0.0, 1.0))] = 0.9
    notes = decode_notes(probs, FRONT_END, KEYS, DecodeOptions(0.3, 0.3, harmonic_threshold=0.7))
    assert [(n.pitch, round(n.start_s / FRONT_END.frame_s)) for n in notes] == [(60, 2), (48, 14)]


def test_drum_hits_are_never_dropped_as_partials():
    drums = KeySpace.drums(tuple((pitch,) for pitch in range(35, 60)))  # 12 keys apart and more
    probs = {name: np.zeros((20, drums.keys), np.float32) for name in HEADS}
    probs["onset"][5, :] = 0.4
    probs["onset"][5, 0] = 0.9
    hits = decode_notes(probs, FRONT_END, drums, DecodeOptions(0.3, 0.3, harmonic_threshold=0.9))
    assert len(hits) == drums.keys


@pytest.mark.parametrize("frames", [0, 1, 39, 40, 48, 131])
@pytest.mark.parametrize("chunk, context", [(40, 8), (40, 0), (8, 8), (1, 1), (1, 0)])
def test_chunked_prediction_covers_every_frame_exactly_once(tiny, frames, chunk, context):
    mel = np.random.default_rng(frames).normal(-5, 2, (frames, FRONT_END.mel_bins)).astype(np.float32)
    blocks = np.split(mel, [1, 7, 30]) if frames > 30 else [mel]
    got = tiny.predict_all(blocks) if chunk == 40 and context == 8 else {
        "frame": np.concatenate([p["frame"] for p in tiny.predict(blocks, chunk=chunk,
                                                                  context=context)] or
                                [np.zeros((0, KEYS.keys), np.float16)])}
    assert got["frame"].shape == (frames, KEYS.keys)
    if frames and context == chunk:  # every chunk sees its whole neighbourhood of `context`
        assert np.abs(got["frame"][:1] - tiny.run(mel[None, :1 + context])["frame"][0, :1]).max() < 2e-3


def test_prediction_refuses_a_context_longer_than_its_chunk(tiny):
    with pytest.raises(ValueError, match="context <= chunk"):
        list(tiny.predict([np.zeros((50, FRONT_END.mel_bins), np.float32)], chunk=16, context=32))


def test_chunked_prediction_covers_every_frame_once_and_matches_one_run(tiny):
    mel = FRONT_END.log_mel(np.random.default_rng(1).normal(0, 0.1, 5 * RATE).astype(np.float32))
    whole = tiny.run(mel[None])
    blocks = np.split(mel, [30, 31, 100])
    one_chunk = list(tiny.predict(blocks, chunk=len(mel) + 10))
    np.testing.assert_allclose(one_chunk[0]["onset"], whole["onset"][0], atol=2e-3)
    chunked = list(tiny.predict(blocks, chunk=40, context=8))
    joined = np.concatenate([c["frame"] for c in chunked])
    assert joined.shape == (len(mel), KEYS.keys)
    # Context makes chunk seams nearly invisible to the recurrent heads.
    assert np.abs(joined - whole["frame"][0]).max() < 0.05


def test_the_export_computes_what_torch_computes(tmp_path):
    from mtools.training.nets import OnsetsFramesNet
    from mtools.training.transcription import export_graph, parity_error

    model = OnsetsFramesNet(channels=(2, 4), acoustic=16, lstm=4).eval()
    export_graph(model, tmp_path / "of.onnx")
    assert parity_error(model, tmp_path / "of.onnx") < 1e-4


def test_training_crops_get_a_timbre_change_each_and_the_run_records_since_when(tmp_path):
    from mtools.training.audio_augment import MelAugmentation
    from mtools.training.loop import TrainConfig
    from mtools.training.renders import RenderSet
    from mtools.training.transcription import (CropBatches, mel_augmentation_records,
                                               note_mel_augmentation)

    rng = np.random.default_rng(0)
    frames = 400
    renders = RenderSet(rng.normal(-5.0, 2.0, (frames, 229)).astype(np.float16),
                        *(rng.integers(0, 2, (frames, 88)).astype(np.uint8) for _ in range(3)),
                        rng.integers(0, 128, (frames, 88)).astype(np.uint8),
                        np.array([[0, frames]]))
    config = TrainConfig(batch_size=4, crop_steps=50)
    every = MelAugmentation(p=1.0)
    plain = CropBatches(renders, config).batch(np.random.default_rng(1))
    changed = CropBatches(renders, config, every, FRONT_END.band_centres_hz).batch(
        np.random.default_rng(1))
    # the same crops (the crop draws come first), each with a timbre of its own; labels kept
    for a, b in zip(plain[1:], changed[1:]):
        torch.testing.assert_close(a, b)
    shift = (changed[0] - plain[0]).mean(dim=(1, 2))
    assert shift.abs().min() > 1e-3 and len(set(shift.round(decimals=3).tolist())) == 4
    with pytest.raises(ValueError):
        CropBatches(renders, config, every)

    run_dir = tmp_path / "run"
    assert mel_augmentation_records(run_dir) == []
    note_mel_augmentation(run_dir, every, 3500)
    note_mel_augmentation(run_dir, every, 4000)  # resumed with the same settings: no new record
    note_mel_augmentation(run_dir, None, 4500)
    records = mel_augmentation_records(run_dir)
    assert [r["step"] for r in records] == [3500, 4500]
    assert records[0]["settings"]["eq_db"] == every.eq_db and records[1]["settings"] is None
    note_mel_augmentation(run_dir, every, 4000)  # resumed from an older checkpoint: 4500 undone
    assert [r["step"] for r in mel_augmentation_records(run_dir)] == [3500]
    note_mel_augmentation(run_dir, None, 2000)  # from best.pt of step 2000, without it
    assert mel_augmentation_records(run_dir) == [{"step": 2000, "settings": None}]


def test_rare_keys_onsets_weigh_more_up_to_the_cap_and_common_ones_stay_at_one():
    from mtools.training.transcription import ONSET_WEIGHT_CAP, onset_pos_weights

    onset = np.zeros((1000, 4), np.uint8)
    onset[:600, 0] = 1  # 60 % of the onsets
    onset[:375, 1] = 1  # 37.5 %
    onset[:25, 2] = 1  # 2.5 %: sqrt(0.1 / 0.025) = 2
    weights = onset_pos_weights(onset, 0.1)  # key 3 has none: the cap
    np.testing.assert_allclose(weights, [1.0, 1.0, 2.0, ONSET_WEIGHT_CAP], rtol=1e-6)
    np.testing.assert_allclose(onset_pos_weights(onset, 0.0), 1.0)
    from mtools.errors import InputFormatError
    with pytest.raises(InputFormatError):
        onset_pos_weights(np.zeros((10, 4), np.uint8), 0.1)


def test_an_onset_weight_scales_only_its_key_s_true_onsets_in_the_loss():
    from mtools.training.nets import OnsetsFramesNet
    from mtools.training.transcription import transcription_loss

    torch.manual_seed(0)
    model = OnsetsFramesNet(229, 2, channels=(4, 4), acoustic=8, lstm=4).eval()
    mel = torch.randn(1, 20, 229)
    onset = torch.zeros(1, 20, 2)
    zeros = torch.zeros(1, 20, 2)
    onset[0, 5, 1] = 1.0
    batch = (mel, onset, zeros, zeros, zeros)
    plain = transcription_loss(model, batch)[0]
    same = transcription_loss(model, batch, onset_weight=torch.tensor([1.0, 1.0]))[0]
    torch.testing.assert_close(plain, same)
    with torch.no_grad():
        logit = model(mel)[0][0, 5, 1]
    true_cell = torch.nn.functional.softplus(-logit) / 40  # its share of the onset BCE mean
    heavier = transcription_loss(model, batch, onset_weight=torch.tensor([1.0, 3.0]))[0]
    torch.testing.assert_close(heavier - plain, 2 * true_cell)
    other = transcription_loss(model, batch, onset_weight=torch.tensor([3.0, 1.0]))[0]
    torch.testing.assert_close(other, plain)  # key 0 has no true onset here
    on_meta = model.to("meta")  # a CPU weight moves to the network's device (a GPU's)
    meta_batch = tuple(t.to("meta") for t in batch)
    assert transcription_loss(on_meta, meta_batch, torch.tensor([1.0, 3.0]))[0].is_meta


def test_a_run_keeps_the_onset_balance_and_weights_it_started_with(tmp_path):
    from mtools.errors import UsageError
    from mtools.training.loop import TrainConfig
    from mtools.training.render_sources import DRUMS
    from mtools.training.transcription import TranscriptionRequest, reproduce_command, \
        run_onset_weighting

    onset = np.zeros((100, 8), np.uint8)
    onset[:91, 0] = onset[:9, 1] = 1  # key 1: 9 % of the 100 onsets; 2-7 none
    run_dir = tmp_path / "run"

    def request(share, folder=run_dir, **loop):
        return TranscriptionRequest(DRUMS, tmp_path, folder, loop=TrainConfig(**loop),
                                    balance_onsets=share)

    asked, weights = run_onset_weighting(request(0.1), onset)  # new: computed and recorded
    assert asked.balance_onsets == 0.1 and "--balance-onsets 0.1" in reproduce_command(asked)
    np.testing.assert_allclose(weights[:2], [1.0, (0.1 / 0.09) ** 0.5], rtol=1e-6)
    again, _ = run_onset_weighting(request(0.2), onset)  # no checkpoint yet: not binding
    assert again.balance_onsets == 0.2
    run_onset_weighting(request(0.1), onset)
    (run_dir / "best.pt").write_bytes(b"")  # a run brought back with its best weights alone
    other = np.ones((100, 8), np.uint8)  # the cache rebuilt since: the run's weights stay
    for share in (None, 0.1):
        kept, kept_weights = run_onset_weighting(request(share), other)
        assert kept.balance_onsets == 0.1
        np.testing.assert_allclose(kept_weights, weights, rtol=1e-6)
    for share in (0.0, 0.2):
        with pytest.raises(UsageError, match=f"trained with --balance-onsets 0.1, not {share:g}"):
            run_onset_weighting(request(share), onset)
    older = tmp_path / "older"  # a run from before the record: trained unweighted
    older.mkdir()
    (older / "last.pt").write_bytes(b"")
    with pytest.raises(UsageError, match="trained with --balance-onsets 0, not 0.1"):
        run_onset_weighting(request(0.1, older), onset)
    plain, none = run_onset_weighting(request(None, older), onset)
    assert plain.balance_onsets == 0 and none is None
    assert "--balance-onsets" not in reproduce_command(plain)
    fresh = tmp_path / "fresh"  # --export-only records nothing
    run_onset_weighting(request(0.1, fresh, max_steps=0), onset)
    assert not fresh.exists()


def test_training_hands_the_run_s_onset_weights_to_the_loss_and_the_card(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import mtools.training.renders as renders
    import mtools.training.transcription as transcription
    from mtools.training.loop import TrainConfig
    from mtools.training.render_sources import DRUMS

    frames, rng = 200, np.random.default_rng(0)
    onset = np.zeros((frames, 8), np.uint8)
    onset[::2, 0] = onset[::50, 6] = 1  # crash: 4 of 104 onsets; classes 1-5 and 7: none
    zeros = np.zeros((frames, 8), np.uint8)
    tiny = renders.RenderSet(rng.normal(-5, 2, (frames, 229)).astype(np.float16), onset, zeros,
                             zeros, zeros, np.array([[0, frames]]))
    monkeypatch.setattr(renders, "build_renders", lambda *args, **kwargs: None)
    monkeypatch.setattr(renders, "load_renders", lambda part, instrument: tiny)
    seen = {}

    class Trainer:  # records what training would run with
        def __init__(self, *args, loss_fn, **kwargs):
            seen["loss"], self.config, self.history = loss_fn, args[4], SimpleNamespace(step=0)

        def run(self):
            return None

    monkeypatch.setattr(transcription, "Trainer", Trainer)
    monkeypatch.setattr(transcription, "load_best", lambda run_dir: (None, TrainConfig()))
    monkeypatch.setattr(transcription, "export_transcriber",
                        lambda request, *args: seen.update(card=transcription.onset_weighting_card(
                            DRUMS.keys, request.balance_onsets, args[-1])))
    request = transcription.TranscriptionRequest(DRUMS, tmp_path, tmp_path / "run",
                                                 balance_onsets=0.1)
    transcription.train_transcriber(request)
    want = (0.1 / (4 / 104)) ** 0.5
    torch.testing.assert_close(seen["loss"].keywords["onset_weight"],
                               torch.tensor([1, 4, 4, 4, 4, 4, want, 4], dtype=torch.float32))
    card = seen["card"]
    assert card["balance_onsets"] == 0.1 and card["weights"]["36"] == 1.0
    assert card["weights"]["49"] == round(want, 3) and card["weights"]["46"] == card["cap"] == 4.0


def test_balance_onsets_is_for_transcription_models_and_a_share(tmp_path, monkeypatch):
    import mtools.training.transcription as transcription

    asked = []
    monkeypatch.setattr(transcription, "train_transcriber",
                        lambda request, progress: asked.append(request.balance_onsets))
    for share in ([], ["--balance-onsets", "0.1"]):
        result = run(["train", "onsets_frames_drums", *share, "--out", tmp_path / "m",
                      "--run-dir", tmp_path / "run", "--quiet"])
        assert result.code == 0, result.stderr
    assert asked == [None, 0.1]
    monkeypatch.undo()
    refused = run(["train", "melody_rnn", "--balance-onsets", "0.1", "--out", tmp_path / "m"])
    assert refused.code == 2 and "--balance-onsets does not apply to melody_rnn" in refused.stderr
    for bad in ("1.5", "-0.1", "nan"):
        refused = run(["train", "onsets_frames_drums", "--balance-onsets", bad,
                       "--out", tmp_path / "m", "--run-dir", tmp_path / "run"])
        assert refused.code == 2 and "--balance-onsets" in refused.stderr
    assert not (tmp_path / "run").exists()


def test_an_export_loads_back_for_init_from_even_halved(tmp_path):
    from mtools.errors import MtoolsError
    import onnx

    from mtools.training.half import halved
    from mtools.training.nets import OnsetsFramesNet
    from mtools.training.transcription import export_graph, parity_error
    from mtools.training.warm_start import calibrate_folded_norms, load_export

    torch.manual_seed(0)
    size = {"channels": (2, 4), "acoustic": 16, "lstm": 4, "dropout": 0.0}  # train mode: BN only
    mel = torch.from_numpy(np.random.default_rng(0).normal(-6, 3, (4, 30, 229)).astype(np.float32))
    trained = OnsetsFramesNet(**size)
    with torch.no_grad():
        for _ in range(10):  # running statistics far from a fresh network's
            trained.train()(mel)
    path = tmp_path / "of.onnx"
    export_graph(trained.eval(), path)  # folds each batch norm into its convolution
    model = OnsetsFramesNet(**size)
    error, quantized = load_export(model, path, parity_error)
    assert error < 1e-4 and not quantized
    calibrate_folded_norms(model, [(mel,)])
    assert parity_error(model, path) < 1e-4  # still the file's function in eval mode
    with torch.no_grad():  # and nearly so in training mode, on the crops it measured
        train_mode = model.train()(mel)[1]
        assert (train_mode - trained.eval()(mel)[1]).abs().max() < 1e-3
    onnx.save(halved(onnx.load(str(path))), str(tmp_path / "half.onnx"))  # float16, as bundled
    assert load_export(OnsetsFramesNet(**size), tmp_path / "half.onnx", parity_error)[0] < 1e-4
    with pytest.raises(MtoolsError, match="in the file"):  # another size is refused
        load_export(OnsetsFramesNet(**{**size, "lstm": 6}), path, parity_error)


def test_a_wider_network_starts_as_the_narrow_one_computes(tmp_path, monkeypatch):
    from mtools.errors import MtoolsError
    from mtools.training import widen
    from mtools.training.nets import OnsetsFramesNet
    from mtools.training.transcription import export_graph

    torch.manual_seed(0)
    mel = torch.from_numpy(np.random.default_rng(0).normal(-6, 3, (2, 40, 229)).astype(np.float32))
    narrow = OnsetsFramesNet(channels=(2, 4), acoustic=6, lstm=3)
    with torch.no_grad():
        for _ in range(3):  # batch norms with statistics of their own
            narrow.train()(mel)
        want = narrow.eval()(mel)
    wide = OnsetsFramesNet(channels=(4, 12), acoustic=13, lstm=7)  # 2x, 3x and uneven copies
    note = widen.widen_onsets_frames(wide, narrow)
    assert note["from_network"] == {"channels": [2, 4], "acoustic": 6, "lstm": 3}
    with torch.no_grad():
        noisy = wide.eval()(mel)
        monkeypatch.setattr(widen, "NOISE", 0.0)
        widen.widen_onsets_frames(wide, narrow)
        exact = wide.eval()(mel)
    for a, b, c in zip(want, exact, noisy):
        assert (a - b).abs().max() < 1e-5  # the same function
        assert 0 < (a - c).abs().max() < 0.05  # the copies told apart, the function near
    with pytest.raises(MtoolsError, match="cannot be narrowed"):
        widen.widen_onsets_frames(narrow, wide)
    path = tmp_path / "narrow.onnx"
    export_graph(narrow, path)
    path.with_suffix(".json").write_text(json.dumps({"hyperparameters": narrow.config}))
    assert widen.narrower_donor(wide, path).config == narrow.config
    assert widen.narrower_donor(OnsetsFramesNet(channels=(2, 4), acoustic=6, lstm=3), path) is None
    assert widen.narrower_donor(wide, None) is None


def test_transcribe_writes_midi_from_a_file_and_jsonl_from_stdin(tiny_path, tmp_path):
    wav = wav_bytes(tone(261.6, 2.0, rate=44100), 44100)  # any rate: resampled to the model's
    (tmp_path / "a.wav").write_bytes(wav)
    result = run(["transcribe", tmp_path / "a.wav", "--model", tiny_path.parent,
                  "--onset-threshold", "0.3", "--harmonic-threshold", "0.6"])
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(b"MThd")
    piped = run(["transcribe", "--model", tiny_path.parent, "--to", "jsonl"], stdin=wav)
    assert piped.code == 0, piped.stderr
    line = json.loads(piped.stdout.decode().splitlines()[0])
    assert line["mtools"]["model"] == "onsets_frames"
    assert line["totalTime"] >= 2.0


def test_every_note_respects_the_thresholds_and_the_shortest_length(tiny, tmp_path):
    from mtools.models.onsets_frames import TranscribeOptions
    from mtools.models.transcription import DecodeOptions
    from mtools.training.transcription_metrics import transcribe_samples

    audio = np.random.default_rng(2).normal(0, 0.2, 3 * RATE).astype(np.float32)
    loose = transcribe_samples(tiny, audio, TranscribeOptions(decode=DecodeOptions(0.0, 0.0)))
    highest = float(tiny.predict_all(FRONT_END.stream([audio]))["onset"].max())
    strict = transcribe_samples(tiny, audio, TranscribeOptions(
        decode=DecodeOptions(highest, 0.0)))  # no onset lies above its highest value
    long_only = transcribe_samples(tiny, audio, TranscribeOptions(
        decode=DecodeOptions(0.0, 0.0, min_note_s=0.5)))
    assert len(loose.notes) > 0 and strict.notes == ()
    assert all(n.end_s - n.start_s >= 0.5 for n in long_only.notes)


def test_the_cards_thresholds_are_the_default_and_the_flags_override_them(tiny, tmp_path):
    from tiny_models import tiny_transcriber

    audio = np.random.default_rng(2).normal(0, 0.2, 3 * RATE).astype(np.float32)
    highest = float(tiny.predict_all(FRONT_END.stream([audio]))["onset"].max())
    strict = tiny_transcriber(tmp_path / "strict", decoding={  # above every onset (16-bit WAV)
        "onset_threshold": min(1.0, highest + 0.01), "frame_threshold": 0.0})
    (tmp_path / "a.wav").write_bytes(wav_bytes(audio, RATE))
    silent = run(["transcribe", tmp_path / "a.wav", "--model", strict, "--to", "jsonl"])
    assert silent.code == 0 and json.loads(silent.stdout).get("notes", []) == []
    loose = run(["transcribe", tmp_path / "a.wav", "--model", strict, "--to", "jsonl",
                 "--onset-threshold", "0"])
    assert loose.code == 0 and len(json.loads(loose.stdout).get("notes", [])) > 0


def test_a_card_names_its_harmonic_threshold_or_drops_no_partials():
    chosen = {"onset_threshold": 0.3, "frame_threshold": 0.4, "harmonic_threshold": 0.7}
    assert DecodeOptions.from_card({"decoding": chosen}) == DecodeOptions(
        0.3, 0.4, harmonic_threshold=0.7)
    assert DecodeOptions.from_card({}).harmonic_threshold == 0.0
    assert DecodeOptions(0.2).over(DecodeOptions(0.5, 0.5, harmonic_threshold=0.7)) == \
        DecodeOptions(0.2, 0.5, harmonic_threshold=0.7)


def test_thresholds_are_chosen_where_true_onsets_and_frames_stand_out():
    pytest.importorskip("mir_eval")
    from mtools.training.transcription_metrics import choose_thresholds

    frame_s = FRONT_END.frame_s
    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(np.arange(0, 400, 12), 25, replace=False))
    reference = make_score([Note(int(rng.integers(40, 90)), 80, s * frame_s, (s + 8) * frame_s)
                            for s in starts])
    labels = note_labels(reference, 420, FRONT_END, KEYS)
    noise = rng.random(labels["onset"].shape) < 0.002
    # True onsets at 0.35, spurious ones at 0.15; true frames at 0.45, others 0.25 (a
    # frame threshold under 0.25 runs every note on to the next onset).
    probs = {"onset": np.where(labels["onset"] > 0, 0.35, np.where(noise, 0.15, 0.0)),
             "frame": np.where(labels["frame"] > 0, 0.45, 0.25),
             "velocity": labels["velocity"]}

    class Oracle:
        front_end, keys = FRONT_END, KEYS

        def predict_all(self, mel_blocks):
            return probs

    chosen = choose_thresholds(Oracle(), [("piece", reference, np.zeros(10, np.float32))])
    assert 0.15 < chosen["onset_threshold"] < 0.35
    assert 0.25 < chosen["frame_threshold"] < 0.45
    assert chosen["note_f1_by_onset_threshold"][str(chosen["onset_threshold"])] == 1.0
    assert chosen["note_f1_by_onset_threshold"]["0.5"] == 0.0


def test_a_drum_model_gets_an_onset_threshold_per_class_where_one_class_runs_weaker():
    pytest.importorskip("mir_eval")
    from mtools.training.transcription_metrics import choose_thresholds

    drums = KeySpace.drums(((36,), (38,), (49,)))
    frame_s = FRONT_END.frame_s
    rng = np.random.default_rng(1)
    hits = [Note(pitch, 90, s * frame_s, s * frame_s + 0.1, is_drum=True, instrument=9)
            for pitch in (36, 38, 49) for s in rng.choice(np.arange(0, 600, 10), 20, replace=False)]
    reference = make_score(hits)
    labels = note_labels(reference, 620, FRONT_END, drums)
    noise = rng.random(labels["onset"].shape) < 0.05
    # kick and snare: true 0.6, spurious 0.3; crash (class 2) true only 0.2, nothing spurious
    onset = np.where(labels["onset"] > 0, 0.6, np.where(noise, 0.3, 0.0))
    onset[:, 2] = np.where(labels["onset"][:, 2] > 0, 0.2, 0.0)
    probs = {"onset": onset, "frame": labels["frame"], "velocity": labels["velocity"]}

    class Oracle:
        front_end, keys = FRONT_END, drums

        def predict_all(self, mel_blocks):
            return probs

    chosen = choose_thresholds(Oracle(), [("piece", reference, np.zeros(10, np.float32))])
    assert 0.3 <= chosen["onset_threshold"] < 0.6  # one threshold loses the crashes
    assert chosen["note_offset_f1_by_frame_threshold"]["0.5"] == 1.0  # at the class thresholds
    per_class = chosen["onset_threshold_by_class"]
    assert 0.3 <= min(per_class[:2]) and max(per_class[:2]) < 0.6 and per_class[2] < 0.2
    assert chosen["note_f1_at_class_thresholds"] == 1.0
    assert chosen["note_f1_at_class_thresholds"] > max(chosen["note_f1_by_onset_threshold"].values())


def test_per_class_onset_thresholds_apply_unless_one_threshold_is_asked_for():
    from mtools.training.transcription_metrics import class_onset_thresholds

    drums = KeySpace.drums(((36,), (49,)))
    probs = {name: np.zeros((20, 2), np.float32) for name in HEADS}
    probs["onset"][5, :] = 0.3
    card = DecodeOptions.from_card({"decoding": {"onset_threshold": 0.4,
                                                 "onset_threshold_by_class": [0.5, 0.2]}})
    assert card.class_onset_thresholds == (0.5, 0.2)
    own = DecodeOptions().over(card)
    assert [n.pitch for n in decode_notes(probs, FRONT_END, drums, own)] == [49]
    asked = DecodeOptions(onset_threshold=0.25).over(card)  # --onset-threshold: every class
    assert asked.class_onset_thresholds is None
    mine = DecodeOptions(class_onset_thresholds=(0.1, 0.9)).over(card)  # a caller's own list
    assert mine.class_onset_thresholds == (0.1, 0.9) and mine.onset_threshold == 0.4
    sixteen = {name: p.astype(np.float16) for name, p in probs.items()}  # as predict_all gives
    sixteen["onset"][5, :] = np.float16(0.3)  # 0.30005: above 0.3 either way, or neither
    assert (decode_notes(sixteen, FRONT_END, drums, DecodeOptions(0.3, 0.5))
            == decode_notes(sixteen, FRONT_END, drums, DecodeOptions(
                0.3, 0.5, class_onset_thresholds=(0.3, 0.3))))
    assert [n.pitch for n in decode_notes(probs, FRONT_END, drums, asked)] == [36, 49]
    assert DecodeOptions.from_card({"decoding": {}}).class_onset_thresholds is None
    with pytest.raises(ValueError, match="3 class onset thresholds for 2 outputs"):
        decode_notes(probs, FRONT_END, drums, DecodeOptions(0.5, 0.5, class_onset_thresholds=(
            0.1, 0.1, 0.1)))
    target = (0.25, 0.6, 0.05)  # coordinate ascent finds a separable optimum on the grid

    def distance(t):
        return -sum((a - b) ** 2 for a, b in zip(t, target))

    found, score = class_onset_thresholds(distance, (0.4,) * 3, distance((0.4,) * 3))
    assert found == target and score == 0.0
    assert class_onset_thresholds(lambda t: 0.0, (0.4,) * 3, 0.0) is None  # nothing gains


def test_eval_names_a_card_s_class_thresholds_and_a_bad_list_is_a_model_error(tmp_path):
    pytest.importorskip("mir_eval")
    from mtools.io.midi import score_to_midi
    from tiny_models import tiny_transcriber

    (tmp_path / "take.wav").write_bytes(wav_bytes(tone(440.0, 2.0), RATE))
    (tmp_path / "take.mid").write_bytes(score_to_midi(make_score([Note(69, 80, 0.0, 2.0)])))
    path = tiny_transcriber(tmp_path / "m", decoding={
        "onset_threshold": 0.5, "onset_threshold_by_class": [0.25] * 88})
    own = json.loads(run(["eval", "transcribe", tmp_path / "take.wav", "--model", path,
                          "--json"]).stdout)
    assert own["onset_threshold_by_class"] == {str(pitch): 0.25 for pitch in range(21, 109)}
    asked = json.loads(run(["eval", "transcribe", tmp_path / "take.wav", "--model", path,
                            "--json", "--onset-threshold", "0.4"]).stdout)
    assert "onset_threshold_by_class" not in asked and asked["onset_threshold"] == 0.4
    from mtools.training.half import measure  # a card's figures hold no thresholds
    figures = measure(path, [str(tmp_path / "take.wav")])
    assert "note_f1" in figures and not any("threshold" in key for key in figures)
    for bad in ([0.25] * 87, [1.5] * 88, "0.25"):
        path = tiny_transcriber(tmp_path / "bad", decoding={"onset_threshold_by_class": bad})
        refused = run(["transcribe", tmp_path / "take.wav", "--model", path])
        assert refused.code == 69 and "decoding thresholds are unusable" in refused.stderr
        assert "internal error" not in refused.stderr


def test_a_harmonic_threshold_is_chosen_where_octave_ghosts_are_weaker_than_their_notes():
    pytest.importorskip("mir_eval")
    from mtools.training.transcription_metrics import choose_thresholds

    frame_s = FRONT_END.frame_s
    starts = np.arange(4, 400, 16)
    reference = make_score([Note(48 + int(s) % 12, 80, s * frame_s, (s + 8) * frame_s)
                            for s in starts])
    labels = note_labels(reference, 420, FRONT_END, KEYS)
    loud = np.zeros_like(labels["onset"])
    loud[starts[::2]] = labels["onset"][starts[::2]]  # every other note is sure of itself
    ghosts = np.zeros_like(loud)  # and sounds a weaker octave above, a frame later
    ghosts[1:, 12:] = loud[:-1, :-12]
    # Onset thresholds alone cannot part the quiet notes (0.5) from the ghosts (0.6).
    probs = {"onset": np.where(loud > 0, 0.9, np.where(labels["onset"] > 0, 0.5,
                                                       np.where(ghosts > 0, 0.6, 0.0))),
             "frame": np.where(labels["frame"] > 0, 0.8, 0.0), "velocity": labels["velocity"]}

    class Oracle:
        front_end, keys = FRONT_END, KEYS

        def predict_all(self, mel_blocks):
            return probs

    chosen = choose_thresholds(Oracle(), [("piece", reference, np.zeros(10, np.float32))])
    assert 0.6 < chosen["harmonic_threshold"] <= 0.9 and chosen["onset_threshold"] < 0.5
    assert chosen["note_f1_by_harmonic_threshold"][str(chosen["harmonic_threshold"])] == 1.0
    assert max(chosen["note_f1_by_onset_threshold"].values()) < 0.9


def test_a_batch_over_a_folder_keeps_going_past_a_bad_file(tiny_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.wav").write_bytes(wav_bytes(tone(440.0, 1.0), RATE))
    (folder / "bad.wav").write_bytes(b"RIFF not really audio")
    (folder / "notes.txt").write_text("not an input")
    result = run(["transcribe", folder, "-o", f"{tmp_path}/out/", "--model", tiny_path.parent])
    assert result.code == 65
    assert "bad.wav" in result.stderr and "1 of 2 inputs failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mid"]
    again = run(["transcribe", folder, "-o", f"{tmp_path}/out/", "--model", tiny_path.parent,
                 "--skip-existing"])
    assert "skipped 1 input" in again.stderr


def test_a_symbolic_model_cannot_transcribe(tmp_path):
    (tmp_path / "a.wav").write_bytes(wav_bytes(tone(440.0, 0.5), RATE))
    result = run(["transcribe", tmp_path / "a.wav", "--model", "coconet"])
    assert result.code == 2
    assert "transcribe" in result.stderr


def test_perfect_transcriptions_score_one_and_empty_ones_zero(tiny):
    pytest.importorskip("mir_eval")
    from mtools.training.transcription_metrics import score_figures

    frame_s = FRONT_END.frame_s
    reference = make_score([Note(60, 80, 10 * frame_s, 30 * frame_s),
                            Note(67, 100, 20 * frame_s, 40 * frame_s)])
    perfect = score_figures(reference, reference, tiny)
    assert perfect["note_f1"] == perfect["note_offset_f1"] == perfect["frame_f1"] == 1.0
    assert perfect["note_velocity_f1"] == 1.0
    shifted = make_score([Note(60, 80, 10 * frame_s + 0.2, 30 * frame_s)])
    missed = score_figures(reference, shifted, tiny)
    assert missed["note_f1"] == 0.0 and missed["note_recall"] == 0.0
    empty = score_figures(reference, make_score([]), tiny)
    assert empty["note_f1"] == empty["frame_f1"] == 0.0
    # A reference note of no length (ASAP has some) counts as one frame.
    with_blip = make_score(list(reference.notes) + [Note(72, 90, 1.0, 1.0)])
    assert score_figures(with_blip, with_blip, tiny)["note_f1"] == 1.0
    assert score_figures(with_blip, reference, tiny)["note_recall"] == pytest.approx(2 / 3)


def test_a_drum_hit_is_scored_as_its_class():
    pytest.importorskip("mir_eval")
    from mtools.training.transcription_metrics import class_counts, class_figures, score_figures

    drums = OnsetsFrames(None, FRONT_END, KeySpace.drums(((36, 35), (38, 40, 37))))
    hit = lambda pitch, at: Note(pitch, 90, at, at + 0.1, instrument=9, is_drum=True)  # noqa: E731
    reference = make_score([hit(35, 0.5), hit(40, 1.0), hit(37, 1.5), hit(42, 2.0)])
    transcribed = make_score([hit(36, 0.5), hit(38, 1.0), hit(38, 1.5)])  # as decode_notes writes
    figures = score_figures(reference, transcribed, drums)
    assert figures["note_f1"] == 1.0  # 42 is in no class: neither missed nor matched
    wrong_class = make_score([hit(38, 0.5), hit(36, 1.0), hit(36, 1.5)])
    assert score_figures(reference, wrong_class, drums)["note_f1"] == 0.0
    counts = class_counts(reference, make_score([hit(36, 0.5), hit(36, 1.0), hit(38, 1.5)]), drums)
    assert counts.tolist() == [[1, 2, 1], [1, 1, 2]]  # matched, transcribed, in the reference
    assert class_figures(counts, drums) == {
        "36": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "reference_hits": 1,
               "transcribed_hits": 2},
        "38": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "reference_hits": 2,
               "transcribed_hits": 1}}
    none_heard = class_figures(np.array([[0, 0, 5], [0, 3, 0]]), drums)
    assert none_heard["36"] == {"precision": None, "recall": 0.0, "f1": 0.0,
                                "reference_hits": 5, "transcribed_hits": 0}
    assert none_heard["38"] == {"precision": 0.0, "recall": None, "f1": None,
                                "reference_hits": 0, "transcribed_hits": 3}


def test_hits_of_one_class_closer_than_the_onset_tolerance_count_once():
    pytest.importorskip("mir_eval")
    from mtools.training.transcription_metrics import (class_counts, merged_hits, note_arrays,
                                                       score_figures)

    hats = KeySpace.drums(((42, 44), (38,)))
    drums = OnsetsFrames(None, FRONT_END, hats)
    hit = lambda pitch, at, velocity=90: Note(pitch, velocity, at, at + 0.1,  # noqa: E731
                                              instrument=9, is_drum=True)
    flam = [hit(44, 1.0, 40), hit(42, 1.04, 110), hit(38, 1.01)]  # pedal then closed hat
    merged = merged_hits(flam + [hit(42, 1.09), hit(42, 1.2)], hats)
    assert [(n.pitch, n.start_s, n.velocity) for n in merged] == [
        (38, 1.01, 90), (42, 1.04, 110), (42, 1.09, 90), (42, 1.2, 90)]  # 1.09: 90 ms after 1.0
    transcribed = make_score([hit(42, 1.0), hit(38, 1.01)])
    assert score_figures(make_score(flam), transcribed, drums)["note_f1"] == 1.0
    counts = class_counts(make_score(flam), make_score([hit(42, 1.0)]), drums)
    assert counts.tolist() == [[1, 1, 1], [0, 0, 1]]  # matched, transcribed, in the reference
    piano = OnsetsFrames(None, FRONT_END, KeySpace())
    repeated = [Note(60, 90, 1.0, 1.02), Note(60, 90, 1.03, 1.5)]
    assert len(note_arrays(repeated, piano)[0]) == 2  # pitched notes are never merged


def test_eval_scores_audio_beside_its_midi_with_the_thresholds_asked_for(tiny_path, tmp_path):
    pytest.importorskip("mir_eval")
    from mtools.io.midi import score_to_midi

    (tmp_path / "take.wav").write_bytes(wav_bytes(tone(440.0, 2.0), RATE))
    (tmp_path / "take.mid").write_bytes(score_to_midi(make_score([Note(69, 80, 0.0, 2.0)])))
    plain = run(["eval", "transcribe", tmp_path, "--model", tiny_path, "--json"])
    assert plain.code == 0 and plain.stderr == "", plain.stderr
    figures = json.loads(plain.stdout)
    assert figures["pieces"] == 1 and figures["onset_threshold"] == 0.5  # the card names none
    assert figures["harmonic_threshold"] == 0.0
    asked = json.loads(run(["eval", "transcribe", tmp_path, "--model", tiny_path, "--json",
                            "--harmonic-threshold", "0.8"]).stdout)
    assert asked["harmonic_threshold"] == 0.8 and asked["onset_threshold"] == 0.5
    (tmp_path / "longer.mid").write_bytes(score_to_midi(make_score(
        [Note(69, 80, 0.0, 2.0), Note(71, 80, 2.4, 3.0), Note(72, 80, 5.0, 6.0)])))
    clipped = run(["eval", "transcribe", tmp_path / "take.wav", "--model", tiny_path,
                   "--ref", tmp_path / "longer.mid", "--json"])
    assert clipped.code == 0 and clipped.stderr == (
        f"mtools: {tmp_path / 'take.wav'}: warning: 2 of the reference's 3 notes start after "
        "the audio ends (2.0 s); they count as missed\n")
    (tmp_path / "longer.mid").unlink()
    deaf = json.loads(run(["eval", "transcribe", tmp_path, "--model", tiny_path, "--json",
                           "--onset-threshold", "1"]).stdout)
    assert deaf["onset_threshold"] == 1.0 and deaf["note_f1"] == 0.0 and deaf["note_recall"] == 0.0
    two_refs = run(["eval", "transcribe", tmp_path / "take.wav", "--model", tiny_path,
                    "--ref", tmp_path / "take.mid", "--ref", tmp_path / "take.mid"])
    assert two_refs.code == 2 and "--ref" in two_refs.stderr
    from mtools.io.jsonl import scores_to_jsonl

    (tmp_path / "two.jsonl").write_text(scores_to_jsonl([make_score([Note(69, 80, 0.0, 2.0)])] * 2))
    book = run(["eval", "transcribe", tmp_path / "take.wav", "--model", tiny_path, "--ref",
                tmp_path / "two.jsonl"])
    assert book.code == 65 and "holds 2 scores" in book.stderr  # not the first one silently
    on_files = run(["eval", "transcribe", tmp_path, "--model", tiny_path,
                    "--soundfont", "TimGM6mb.sf2"])
    assert on_files.code == 2 and "held-out performances" in on_files.stderr
    heard = run(["eval", "transcribe", "asap", "--model", tiny_path, "--split", "valid",
                 "--soundfont", "FluidR3_GM.sf2"])  # refused before anything renders
    assert heard.code == 2 and "FluidR3_GM.sf2 is not a held-out soundfont" in heard.stderr
    (tmp_path / "take.mid").write_bytes(score_to_midi(make_score([])))
    empty = run(["eval", "transcribe", tmp_path, "--model", tiny_path])
    assert empty.code == 65 and "take.wav: its reference holds no notes" in empty.stderr


def test_eval_and_half_score_the_held_out_pieces_the_card_names(tmp_path, monkeypatch):
    # Which performances are held out comes from the card's record of its
    # valid renders, not from whatever this machine's cache holds.
    from mtools.models.registry import write_card
    from mtools.training import half, renders, transcription
    from tiny_models import tiny_transcriber

    path = tiny_transcriber(tmp_path / "model")
    card = json.loads(path.with_suffix(".json").read_text())
    part = {"takes": [{"piece": "Bach/Fugue", "performance": "Bach/Fugue/a.mid"}]}
    card["training"] = {"renders": {"parts": {"valid": part}}}
    write_card(card, path)
    asked = []

    def pieces(n, instrument=None, **options):
        asked.append(options)
        return [("Bach/Fugue/b.mid", make_score([Note(69, 80, 0.1, 0.6)]), tone(440.0, 1.0))]

    monkeypatch.setattr(renders, "valid_pieces", pieces)
    monkeypatch.setattr(transcription, "available_test_soundfonts",
                        lambda instrument, progress=None: ("SalamanderGrandPianoV3",))
    heard = run(["eval", "transcribe", "asap", "--model", path, "--split", "valid", "--json"])
    assert heard.code == 0, heard.stderr
    assert json.loads(heard.stdout)["pieces"] == 1 and asked == [{"soundfont": None,
                                                                  "valid_part": part}]
    card.pop("training")
    write_card(card, path)
    monkeypatch.setenv("MTOOLS_CACHE", str(tmp_path / "empty-cache"))
    unknown = run(["eval", "transcribe", "asap", "--model", path, "--split", "valid", "--json"])
    assert unknown.code == 0 and "card names no validation performances" in unknown.stderr
    assert asked[-1]["valid_part"] is None
    card["training"] = {"renders": {"parts": {"valid": part}}}
    write_card(card, path)
    asked.clear()
    figures = half.measure(path, ["asap"])
    assert "SalamanderGrandPianoV3" in figures["other_soundfonts"]
    assert [options["valid_part"] for options in asked] == [part, part]


def test_transcribe_errors_are_one_line_with_the_contract_codes(tiny_path, tmp_path):
    model = ["--model", tiny_path.parent]
    missing = run(["transcribe", tmp_path / "nope.wav", *model])
    assert missing.code == 66 and missing.stderr.count("\n") == 1
    assert run(["transcribe", *model], stdin=b"").code == 65
    garbage = run(["transcribe", *model], stdin=b"this is not audio at all")
    assert garbage.code == 65 and "not" in garbage.stderr
    wav = wav_bytes(tone(440.0, 0.5), RATE)
    to_terminal = run(["transcribe", *model], stdin=wav, stdout_tty=True)
    assert to_terminal.code == 2 and to_terminal.stdout == b""


def test_a_graph_with_other_names_is_refused_at_load(tmp_path):
    from mtools.errors import ModelNotFoundError
    from tiny_onnx import save_tiny_model

    save_tiny_model(tmp_path, "onsets_frames", task="transcribe")
    with pytest.raises(ModelNotFoundError, match="not an Onsets and Frames graph"):
        OnsetsFrames.from_ref(resolve_model(str(tmp_path / "onsets_frames.onnx")))


def test_progress_reports_the_seconds_of_each_file_on_stderr_only(tiny_path, tmp_path):
    (tmp_path / "a.wav").write_bytes(wav_bytes(tone(440.0, 2.0), RATE))
    quiet = run(["transcribe", tmp_path / "a.wav", "--model", tiny_path.parent, "--to", "jsonl"])
    shown = run(["transcribe", tmp_path / "a.wav", "--model", tiny_path.parent, "--to", "jsonl",
                 "--progress"])
    assert quiet.stderr == "" and shown.code == 0
    assert "a.wav: 2 of 2 s" in shown.stderr
    assert shown.stdout == quiet.stdout  # the data is untouched


def test_eval_prints_a_drum_model_s_classes_a_row_each(capfd):
    from mtools.commands.eval import _print

    _print({"note_f1": 0.5, "by_class": {"36": {"f1": 0.9, "reference_hits": 12},
                                         "38": {"f1": 0.1, "reference_hits": 3}}}, as_json=False)
    assert capfd.readouterr().out.splitlines() == ["    note_f1  0.5",
                                                   "by_class 36  f1 0.9 reference_hits 12",
                                                   "by_class 38  f1 0.1 reference_hits 3"]


def test_a_held_out_soundfont_the_machine_lacks_is_reported_and_left_off_the_card(monkeypatch):
    from mtools.errors import RuntimeUnavailableError
    from mtools.training import renders
    from mtools.training.render_sources import PIANO
    from mtools.training.transcription import available_test_soundfonts, other_soundfont_figures

    def offline(name):
        raise RuntimeUnavailableError(f"cannot fetch {name}")

    monkeypatch.setattr(renders, "soundfont_path", offline)
    said = []
    assert PIANO.test_soundfonts and available_test_soundfonts(PIANO, said.append) == ()
    assert len(said) == len(PIANO.test_soundfonts) and "will not score" in said[0]
    assert other_soundfont_figures(None, PIANO) == {}  # nothing rendered, no error
