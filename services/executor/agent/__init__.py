"""The agent runtime: a Messages-API tool loop (`loop.run_agent`) over tools confined to a
worktree (`tools.Sandbox`), with the prompt built by `prompt`."""
