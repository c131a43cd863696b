"""mfactl: administer TOTP multi-factor authentication on a multi-organization platform."""

__version__ = "0.1.0"
