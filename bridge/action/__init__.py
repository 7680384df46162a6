"""The Action and ``send``: one table of inputs, the step with its retry loop, its output.

``inputs`` turns flags or ``INPUT_*`` variables into Inputs (one table for both faces),
``resolve`` fills what is empty from the CI context (:mod:`bridge.ci`), ``recorder`` records
one deploy on one entity through the core with the one retry loop, ``run`` is the step, and
``output`` speaks to the user (workflow commands, ``$GITHUB_OUTPUT``, the summary).

Nothing is imported here: ``send``'s start stays light.
"""
