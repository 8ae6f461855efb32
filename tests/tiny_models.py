"""Tiny randomly initialised event RNNs exported with real cards, to drive
the model commands end to end in seconds (needs torch)."""

from __future__ import annotations

from pathlib import Path

import torch

from mtools.models.registry import model_stem, write_card
from mtools.training.export import card_hyperparameters, export_event_rnn, graph_names
from mtools.training.nets import MODULES
from mtools.training.tasks import find_spec


def tiny_event_model(folder: Path, family: str = "melody_rnn", config: str | None = None,
                     hidden: int = 8, seed: int = 0) -> Path:
    """Export a random EventLSTM for the spec's encoding with a card;
    returns the .onnx path (its folder works as --model PATH)."""
    spec = find_spec(family, config)
    torch.manual_seed(seed)
    control = int(spec.card_encoding.get("control_size", 0))
    extra = {"attn_length": 5} if spec.module == "attention_lstm" else {}
    model = MODULES[spec.module](spec.encoding.input_size + control, spec.encoding.num_classes,
                                 hidden=hidden, layers=1, dropout=0.0, **extra).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model_stem(spec.family, spec.config)}.onnx"
    export_event_rnn(model, path)
    write_card({"name": spec.family, "config": spec.config, "task": "continue",
                "inputs": graph_names(model)[0], "outputs": graph_names(model)[1],
                "hyperparameters": card_hyperparameters(model), "encoding": spec.card_encoding,
                "description": "tiny random test model"}, path)
    return path


def tiny_coconet(folder: Path, seed: int = 0) -> Path:
    """Export a random, tiny Coconet network with a real card; returns the
    .onnx path."""
    from mtools.models.coconet import GRAPH_INPUTS, GRAPH_OUTPUTS
    from mtools.training.coconet import SPACE, export_graph
    from mtools.training.nets import CoconetNet

    torch.manual_seed(seed)
    model = CoconetNet(SPACE.pitches, len(SPACE.voices), filters=4, layers=6,
                       dilations=(1, 3)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "coconet.onnx"
    export_graph(model, path)
    write_card({"name": "coconet", "task": "harmonize", "other_tasks": ["infill"],
                "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
                "hyperparameters": dict(model.config), "encoding": SPACE.to_card(),
                "description": "tiny random test model"}, path)
    return path


def tiny_music_vae(folder: Path, config: str = "mel_2bar", seed: int = 0, z_size: int = 8) -> Path:
    """Export a random, tiny MusicVAE with a real card; returns the .onnx path."""
    from mtools.models.music_vae import GRAPH_INPUTS, GRAPH_OUTPUTS
    from mtools.training.music_vae import build_network, export_graph
    from mtools.training.vae_windows import CONFIGS

    space = CONFIGS[config].space
    torch.manual_seed(seed)
    sizes = {"enc_hidden": 8, "dec_hidden": 8, "dec_layers": 2, "z_size": z_size}
    parts = dict(CONFIGS[config].network).get("part_z_size")  # a model of parts (the trio)
    sizes.update({"part_z_size": 8, "squeeze": 4} if parts else {"conductor_hidden": 8})
    model = build_network(CONFIGS[config], sizes).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"music_vae-{config}.onnx"
    export_graph(model, path)
    write_card({"name": "music_vae", "config": config, "task": CONFIGS[config].task,
                "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
                "hyperparameters": dict(model.config), "encoding": space.to_card(),
                "description": "tiny random test model"}, path)
    return path


def tiny_transcriber(folder: Path, seed: int = 0, decoding: dict | None = None) -> Path:
    """Export a random, tiny Onsets and Frames network with a real card
    (its default thresholds: `decoding`); returns the .onnx path."""
    from mtools.models.onsets_frames import GRAPH_INPUTS, GRAPH_OUTPUTS
    from mtools.models.transcription import FrontEnd, KeySpace
    from mtools.training.nets import OnsetsFramesNet
    from mtools.training.transcription import export_graph

    torch.manual_seed(seed)
    model = OnsetsFramesNet(FrontEnd().mel_bins, KeySpace().keys, channels=(2, 4), acoustic=16,
                            lstm=4).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "onsets_frames.onnx"
    export_graph(model, path)
    write_card({"name": "onsets_frames", "task": "transcribe",
                "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
                "hyperparameters": dict(model.config),
                "encoding": {"front_end": FrontEnd().to_card(), **KeySpace().to_card(),
                             **({"decoding": decoding} if decoding else {})},
                "description": "tiny random test model"}, path)
    return path
