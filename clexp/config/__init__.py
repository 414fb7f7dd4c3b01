"""What a run is told: the Hydra configs' location (`conf_source`), the argument rules checked before torch
is imported (`argspec`), the one-line errors a user's input can cause (`errors`), the command line's keys
and group options (`overrides`), the published presets' tables (`presets`), and the version and
`--help` text (`about`). Nothing here imports torch or Lightning."""
