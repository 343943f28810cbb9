from services.ledger.service import serve
from shared.runner import service_main

service_main("ledger", serve, needs_database=True)
