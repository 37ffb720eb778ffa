"""The callback and everything it runs during ``fit``.

``callback`` (:class:`CAMTracker`, thin: decides and dispatches), ``arguments`` (its
checks), ``session`` (the record it opens and the maps it computes), ``steps`` (the
per-epoch work), ``interrupts`` + ``watch`` (a ``fit`` left without ``on_train_end``),
``lineage`` (which epochs a record's weights continue), and ``pipeline/`` (the
record and frame work off the training thread).
"""
