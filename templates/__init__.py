"""The packaged email templates (templates/email at the repository top)."""
