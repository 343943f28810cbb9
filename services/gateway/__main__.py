import sys

from services.gateway.auth import doors_from_config
from services.gateway.deps import GatewayConfigError
from services.gateway.service import serve
from shared.config import ConfigError, config_dir, load_config
from shared.runner import service_main

try:
    runtime = load_config(config_dir()).runtime
    doors_from_config(runtime, None, no_auth=False, listen_host=runtime.gateway_host)
except (GatewayConfigError, ConfigError) as exc:
    sys.exit(f"gateway: {exc}")
service_main("gateway", serve, needs_database=True)
