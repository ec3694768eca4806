"""Client libraries for shop platforms and couriers: HTTP, signatures, pagination, mapping to plain records.

Nothing here imports the service (`app`), Flask or SQLAlchemy; the service adapts these libraries.
"""
