"""Crime-language pattern database (data in config/patterns/) and its scanner."""

from .database import PatternDatabase, database_files, load_database
from .loader import DEFAULT_DATABASE_DIR
from .model import CATEGORIES, CONTEXTS, Pattern, PatternDatabaseError, PatternHit

__all__ = [
    "CATEGORIES",
    "CONTEXTS",
    "DEFAULT_DATABASE_DIR",
    "database_files",
    "Pattern",
    "PatternDatabase",
    "PatternDatabaseError",
    "PatternHit",
    "load_database",
]
