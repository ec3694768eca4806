"""The shop's mirrored data: applying platform records (newer wins) and the customer's privacy rights."""
