"""gateway.store: the gateway's database (SQLite in WAL mode) behind one small interface.

``store.py`` holds the ``Store`` and what crosses its interface; ``sql.py`` every SQL
statement and the numbered migrations.
"""

from .store import AlertIn as AlertIn
from .store import CommitResult as CommitResult
from .store import RegistryError as RegistryError
from .store import Store as Store
from .store import StoreError as StoreError
from .store import reading_params as reading_params
