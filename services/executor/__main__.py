from services.executor.service import serve
from shared.runner import service_main

service_main("executor", serve)
