"""Messaging: the outbox (schedule_message), the send job kinds, rendering, signed links and public endpoints."""
