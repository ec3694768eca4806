"""HTTP surfaces of the service, one blueprint per audience."""
