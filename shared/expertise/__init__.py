"""Per-domain expertise: documents in the PRD's YAML shape, learned from what attempts did, curated,
validated against the code, and given to later agents."""

from shared.expertise import distil
from shared.expertise.curate import learn, prune, validate
from shared.expertise.extract import AttemptLog, error_signature, extract
from shared.expertise.model import (DOMAINS, Document, Entry, ExpertiseError, Origin, check_domain, describe,
                                    for_prompt, new_document, parse, render)

__all__ = ["AttemptLog", "DOMAINS", "Document", "Entry", "ExpertiseError", "Origin", "check_domain", "describe",
           "distil", "error_signature", "extract", "for_prompt", "learn", "new_document", "parse", "prune", "render", "validate"]
