"""What an event is: its kinds, fields and counters declared once (``schema``), their validation
(``events``), the counter lists it writes into the SQL queries (``schema_sql``), and the Asterisk
queue_log translation (``queue_log``). Pure: no I/O but ``schema_sql``'s own files.

May import: ``server.core``.
"""
