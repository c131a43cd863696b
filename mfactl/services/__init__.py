"""The use cases. Plain values in, plain values out; each takes the App and commits its own unit
of work. Nothing here imports Typer or Rich."""
