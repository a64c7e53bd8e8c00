"""pg-url.py: a PostgreSQL URL with the password read from a secret file, for the entrypoints.

    python pg-url.py WHO PASSWORD_FILE USER HOST PORT DATABASE

Prints `postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE` with user and password
percent-encoded, so any character works inside the URL. WHO names the caller in errors. The
driver is named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
"""

import sys
from urllib.parse import quote

who, password_file, user, host, port, database = sys.argv[1:7]
with open(password_file, encoding="utf-8") as f:
    password = f.read().rstrip("\n")  # as $(cat file) and the postgres image read it
if not password:
    sys.exit(f"{who}: the PostgreSQL password file is empty")
print(
    f"postgresql+psycopg2://{quote(user, safe='')}:{quote(password, safe='')}"
    f"@{host}:{port}/{database}"
)
