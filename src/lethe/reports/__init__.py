"""Rendered documents: the monthly compliance report and the trust pages."""
