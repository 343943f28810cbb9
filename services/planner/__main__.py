from services.planner.service import serve
from shared.runner import service_main

service_main("planner", serve)
