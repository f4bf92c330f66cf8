"""Durable sessions: transcripts, FIFO lanes per session key and the concurrency cap."""
