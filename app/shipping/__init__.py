"""Courier work in the service: courier accounts, label batches, the print station and the tracking poller.

Talk with couriers lives in `connectors/couriers/`; this package only adapts it to our rows and jobs.
"""
