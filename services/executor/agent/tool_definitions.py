"""The tools as the model sees them (Anthropic `tools=`). Names and inputs are a contract:
recorded transcripts call them."""

from __future__ import annotations

TOOL_DEFINITIONS: list[dict] = [
    {
        "name": "read_file",
        "description": "Read a text file of the worktree, with line numbers. Long files: page with offset/limit.",
        "input_schema": {"type": "object", "properties": {
            "path": {"type": "string", "description": "Path relative to the worktree root."},
            "offset": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
            "limit": {"type": "integer", "minimum": 1, "description": "How many lines to show (default 2000)."},
        }, "required": ["path"]},
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file with the given content; missing folders are created.",
        "input_schema": {"type": "object", "properties": {
            "path": {"type": "string", "description": "Path relative to the worktree root."},
            "content": {"type": "string", "description": "The whole new content of the file."},
        }, "required": ["path", "content"]},
    },
    {
        "name": "edit_file",
        "description": "Replace old_text by new_text in a file. old_text must match exactly (whitespace "
                       "included) and, unless replace_all is set, exactly once.",
        "input_schema": {"type": "object", "properties": {
            "path": {"type": "string"},
            "old_text": {"type": "string", "description": "Exact text to replace."},
            "new_text": {"type": "string", "description": "Text to put in its place."},
            "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."},
        }, "required": ["path", "old_text", "new_text"]},
    },
    {
        "name": "list_files",
        "description": "List the worktree's files matching a glob (default '**/*': everything). .git, "
                       "dependency and cache folders and gitignored files are left out.",
        "input_schema": {"type": "object", "properties": {
            "pattern": {"type": "string", "description": "Glob, e.g. 'src/**/*.py' or '*.md'."},
        }},
    },
    {
        "name": "grep",
        "description": "Search file contents with a Python regular expression; answers path:line:text.",
        "input_schema": {"type": "object", "properties": {
            "pattern": {"type": "string", "description": "Regular expression."},
            "path": {"type": "string", "description": "File or folder to search (default: the whole worktree)."},
            "glob": {"type": "string", "description": "Only files matching this glob, e.g. '*.py'."},
        }, "required": ["pattern"]},
    },
    {
        "name": "run_command",
        "description": "Run a shell command in the worktree root (e.g. tests, builds). Output (stdout and "
                       "stderr) is capped; the command and its children are killed at the timeout; "
                       "background processes end with the command.",
        "input_schema": {"type": "object", "properties": {
            "command": {"type": "string"},
            "timeout_s": {"type": "number", "description": "Seconds before it is killed (default 120)."},
        }, "required": ["command"]},
    },
    {
        "name": "finish",
        "description": "Say the task is done, with a short summary of what changed and why. The task's "
                       "checks run next; if they fail you will be told and can fix the work.",
        "input_schema": {"type": "object", "properties": {
            "summary": {"type": "string", "description": "What was done: files changed, decisions, caveats."},
        }, "required": ["summary"]},
    },
]

TOOL_NAMES: tuple[str, ...] = tuple(t["name"] for t in TOOL_DEFINITIONS)
