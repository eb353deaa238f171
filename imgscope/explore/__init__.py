"""``imgscope explore``: the interactive layer browser.

The package is split so that everything a test or another tool may want
without a terminal lives in :mod:`imgscope.explore.model` (per-step trees,
marks, path histories) and :mod:`imgscope.explore.content` (reading one
file's bytes back from its layer), while :mod:`imgscope.explore.app` is the
only module that imports textual.  Nothing here is imported by
``imgscope --help``: the CLI module imports the app only when the command runs.
"""
