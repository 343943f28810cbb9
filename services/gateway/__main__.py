import os
import sys

from services.gateway.auth import doors_from_env
from services.gateway.deps import GatewayConfigError
from services.gateway.service import serve
from shared.runner import service_main

try:
    doors_from_env(None, no_auth=False, listen_host=os.environ.get("YOKEFLOW_GATEWAY_HOST", "127.0.0.1"))
except GatewayConfigError as exc:
    sys.exit(f"gateway: {exc}")
service_main("gateway", serve, needs_database=True)
