import os
import sys

from services.gateway.deps import GatewayConfigError, check_api_token
from services.gateway.service import serve
from shared.runner import service_main

try:
    check_api_token(os.environ.get("YOKEFLOW_API_TOKEN"))
except GatewayConfigError as exc:
    sys.exit(f"gateway: {exc}")
service_main("gateway", serve, needs_database=True)
