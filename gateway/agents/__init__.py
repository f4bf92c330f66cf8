"""Agent runs: resolving agents, assembling prompts, running a model and emitting events."""
