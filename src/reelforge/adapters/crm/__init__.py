"""CRMs behind the `CrmClient` port (ports/billing.py)."""
