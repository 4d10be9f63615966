"""The schema revision this code runs on, without loading Alembic in the server.

``router-service migrate`` brings a database to it; the server refuses to start on any other.
A test holds it equal to the head of ``migrations/versions``.
"""

SCHEMA_HEAD = "0008"
