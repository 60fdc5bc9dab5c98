"""Shipped device profiles (YAML). Loaded with ``shouhu.profiles.load_profiles``."""

from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent
