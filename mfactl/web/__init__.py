"""`mfactl serve`: the setup page behind the emailed links (Starlette under uvicorn)."""
