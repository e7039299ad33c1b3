"""gateway.store: the gateway's database (SQLite in WAL mode, or PostgreSQL) behind one small interface.

``store.py`` holds the ``Store`` and what crosses its interface; ``sql.py`` every SQL
statement and the numbered migrations; ``pg.py`` and ``sql_pg.py`` the same Store on
PostgreSQL (``Store.open("postgresql://...")``); ``url.py`` tells the two ``--db`` apart.
"""

from .store import AlertIn as AlertIn
from .store import CommitResult as CommitResult
from .store import DEVICE_KINDS as DEVICE_KINDS
from .store import DayClose as DayClose
from .store import DeviceIn as DeviceIn
from .store import DevicesAdded as DevicesAdded
from .store import GATEWAY_ACTOR as GATEWAY_ACTOR
from .store import OPERATOR_KINDS as OPERATOR_KINDS
from .store import PROGRAMMES as PROGRAMMES
from .store import STAFF_ROLES as STAFF_ROLES
from .store import PatientIn as PatientIn
from .store import PatientsAdded as PatientsAdded
from .store import Rejected as Rejected
from .store import ReadingColumns as ReadingColumns
from .store import RegistryError as RegistryError
from .store import Store as Store
from .store import StoreError as StoreError
from .store import reading_params as reading_params
