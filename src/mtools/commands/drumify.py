"""`mtools drumify`: a drum groove that follows any rhythm (GrooVAE)."""

from mtools.commands.humanize import groove_command

HELP = """Make a drum groove from a rhythm: taps, a bass line, any part.

Takes the onset of every note of each input (drums or not, with its exact
timing), 2 bars at a time from the start, and lets the model choose drums
that play that rhythm, with velocities and timing learned from the Groove
MIDI drummers. The input's own notes are kept and the new drums replace any
it had. --temperature 0 gives the model's most likely groove; higher values
vary it (with --seed, -n).

Models: music_vae:groovae_tap (default).

Examples:

\b
  mtools drumify taps.mid > groove.mid
  mtools drumify bassline.mid -n 3 --seed 2 -o grooves/
  mtools convert riff.abc --to midi | mtools drumify --temperature 0 > riff_drums.mid
"""


drumify = groove_command("drumify", "music_vae:groovae_tap", HELP)
