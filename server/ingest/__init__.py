"""What an event is: its kinds, fields and validation (``events``), and the Asterisk queue_log
translation (``queue_log``). Pure: no I/O.

May import: ``server.core``.
"""
