"""Automations: signals from ingest and clock scans, flows as versioned data, their runs, and the API over them.

Public entry points for other parts of the service:
- `app.automations.signals.emit_signal(session, shop_id, kind, ...)`: record a fact (idempotent by dedupe key).
- `app.automations.outbox_port.submit_message(...)`: the one place a flow hands a message to the outbox.
- `app.automations.truth.register_truth_check(platform)`: plug a live store re-read in for a platform.
- `app.automations.segments.compile_segment(definition, scope)`: a segment as one `SELECT customers.id`.
- `app.automations.tags.add_tag(session, shop_id, customer_id, name)` / `remove_tag(...)`: tags by hand (signalled,
  as are the tags flows set).
"""
