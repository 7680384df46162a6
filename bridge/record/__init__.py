"""THE core every face calls to record a deploy: decide, look in Cortex first, converge.

- :mod:`bridge.record.core`: ``record_one`` and the recording policy (create, update,
  delete or skip, decided once), the history a face hands it, the deploy's type, and what
  Cortex's answer for one entity shows (records by key, records without one, doubles: pure);
- :mod:`bridge.record.retrying`: the retry loop of the faces that record in one go (the
  Action, ``send``, ``sync``).
"""
