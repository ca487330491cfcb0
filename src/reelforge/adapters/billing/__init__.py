"""Payment providers behind the `PaymentGateway` port (ports/billing.py)."""
