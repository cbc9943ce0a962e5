"""The HTTP and WebSocket endpoints: each parses its input, authorises the caller, calls the
layers below and answers. ``context`` gives handlers the services and the verified caller.

May import: every domain layer (``core``, ``ingest``, ``history``, ``live``, ``analytics``);
never ``app``, ``runtime``, ``tools`` or ``cli``.
"""
