"""One repository per aggregate, each on one open transaction's session (`Tx` holds them)."""

from reelforge.adapters.db.repositories.accounts import AccountRepository
from reelforge.adapters.db.repositories.alarms import AlarmRepository
from reelforge.adapters.db.repositories.assets import AssetRepository
from reelforge.adapters.db.repositories.credits import CreditRepository
from reelforge.adapters.db.repositories.events import EventRepository
from reelforge.adapters.db.repositories.jobs import JobRepository
from reelforge.adapters.db.repositories.mail import MailRepository
from reelforge.adapters.db.repositories.ops import OpsRepository

__all__ = ["AccountRepository", "AlarmRepository", "AssetRepository", "CreditRepository", "EventRepository",
           "JobRepository", "MailRepository", "OpsRepository"]
