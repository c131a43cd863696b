"""The packaged templates: templates/email and templates/web at the repository top."""
