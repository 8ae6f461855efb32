"""One module per subcommand: parse options, call the library, write.

These modules do not use `from __future__ import annotations`: typer reads
each command's signature with typing.get_type_hints, several times per
command, and string annotations are eval()'d on every read. Building the
whole tree for `mtools --help` spent ~45 ms of its ~230 ms on those evals
on a slow 2-core machine."""
