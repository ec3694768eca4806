"""Channel notifiers: one module per channel behind `Notifier.send(envelope) -> SendOutcome`; they know channels, not flows."""
from app.notifiers.base import ACCEPTED, FAILED_PERMANENTLY, RETRY_LATER, UNKNOWN, Envelope, Notifier, SendOutcome

NOTIFIER_MODULES = {"email": "app.notifiers.email", "sms": "app.notifiers.sms", "push": "app.notifiers.push"}

__all__ = ["ACCEPTED", "FAILED_PERMANENTLY", "RETRY_LATER", "UNKNOWN", "Envelope", "Notifier", "SendOutcome",
           "NOTIFIER_MODULES"]
