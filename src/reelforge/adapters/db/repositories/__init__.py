"""One repository per aggregate, each on one open transaction's session (`Tx` holds them)."""

from reelforge.adapters.db.repositories.accounts import AccountRepository
from reelforge.adapters.db.repositories.alarms import AlarmRepository
from reelforge.adapters.db.repositories.assets import AssetRepository
from reelforge.adapters.db.repositories.credits import CreditRepository
from reelforge.adapters.db.repositories.events import EventRepository
from reelforge.adapters.db.repositories.jobs import JobRepository
from reelforge.adapters.db.repositories.mail import MailRepository
from reelforge.adapters.db.repositories.ops import OpsRepository
from reelforge.adapters.db.repositories.privacy import AccountDataRepository, AuditRepository

__all__ = ["AccountDataRepository", "AccountRepository", "AlarmRepository", "AssetRepository", "AuditRepository",
           "CreditRepository", "EventRepository", "JobRepository", "MailRepository", "OpsRepository"]
