"""The callback and everything it runs during ``fit``.

``callback`` (:class:`CAMTracker`, thin: decides and dispatches), ``arguments`` (its
checks), ``session`` (the record config it checks, the pipeline it opens and the maps it
computes), ``steps`` (the objects it holds for a fit: what the fit has seen, and the steps
over its pipeline), ``failures`` (how a failure inside it is reported), ``interrupts`` +
``watch`` (the fit's end guaranteed, also when it leaves without ``on_train_end``, and what
a fit hands on to the next), ``lineage`` (which epochs a record's weights continue), and
``pipeline/`` (the record and frame stages, off the training thread).
"""
