"""The storefront snippet and the public `/s/...` endpoints it talks to."""
from app.storefront.views import storefront

__all__ = ["storefront"]
