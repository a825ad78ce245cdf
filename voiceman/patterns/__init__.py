"""Crime-language pattern database (data in config/patterns/) and its scanner."""
from .database import PatternDatabase, load_database
from .loader import DEFAULT_DATABASE_DIR
from .model import CATEGORIES, CONTEXTS, Pattern, PatternDatabaseError, PatternHit

__all__ = [
    "CATEGORIES",
    "CONTEXTS",
    "DEFAULT_DATABASE_DIR",
    "Pattern",
    "PatternDatabase",
    "PatternDatabaseError",
    "PatternHit",
    "load_database",
]
