"""Courier client libraries behind one interface, registered by name; see issue #7."""
