"""The commands layer: what the CLI and the HTTP API can ask lethe to do.

Each function takes an open `Runtime` and plain arguments and returns plain data
(dataclasses and the library's own result types). Both edges call these functions and
only these for anything that reaches the control store, so one operation has one
implementation whichever edge asks for it, and neither edge builds store access
objects of its own. Nothing here prints, exits or knows about HTTP: errors are
`LetheError`s, which each edge turns into an exit code or a status.
"""
