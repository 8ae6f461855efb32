"""Reading and writing scores and audio: MIDI, JSONL, MusicXML/ABC, WAV/FLAC/OGG,
stdin/stdout and atomic file output. Modules import their heavy libraries lazily."""
