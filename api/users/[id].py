#!/usr/bin/env python3
"""GET /api/users/42 — a route parameter, JSON out, and a 404 for unknown ids."""
import json
import os

USERS = {"1": "Ada Lovelace", "2": "Grace Hopper", "42": "Douglas Adams"}

user_id = os.environ["WATCHDOG_PARAM_ID"]
if user_id in USERS:
    print("Content-Type: application/json")
    print()
    print(json.dumps({"id": user_id, "name": USERS[user_id]}))
else:
    print("Status: 404 Not Found")
    print("Content-Type: application/json")
    print()
    print(json.dumps({"error": f"no user {user_id}"}))
