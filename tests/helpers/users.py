"""The users the tests sign in as, through Airflow's simple auth manager: one of each role."""

from __future__ import annotations

PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw", "user": "user-pw"}
# [core] simple_auth_manager_users: each user's role is named as the user.
ROLES = ",".join(f"{name}:{name}" for name in PASSWORDS)
