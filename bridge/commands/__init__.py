"""One module per subcommand: ``add_arguments(parser)`` and ``run(args, environ) -> int``.

Modules import their heavy dependencies (Flask, SQLAlchemy, gunicorn) inside ``run`` only,
so building the parser, and running ``send`` or ``action``, never loads them.
"""
