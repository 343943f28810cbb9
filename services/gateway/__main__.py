from services.gateway.service import serve
from shared.runner import service_main

service_main("gateway", serve, needs_database=True)
