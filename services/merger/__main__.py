from services.merger.service import serve
from shared.runner import service_main

service_main("merger", serve)
