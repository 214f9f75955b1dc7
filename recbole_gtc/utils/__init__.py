"""The lowest layer: errors (:mod:`.errors`), files (:mod:`.files`), paths and the model lookup
(:mod:`.utils`), and process-level settings (:mod:`.compat`, :mod:`.kernels`).

Nothing is imported here: :mod:`.kernels` must run before torch loads, and :mod:`.utils`
imports RecBole (and so torch)."""
