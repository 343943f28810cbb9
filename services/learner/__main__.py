from services.learner.service import serve
from shared.runner import service_main

service_main("learner", serve)
