"""Installing and authenticating: shop domains, signed queries, OAuth tokens and session tokens."""
from __future__ import annotations

from connectors.shopify.oauth import OAuthClient, TokenSet, authorize_url
from connectors.shopify.query_signature import canonical_query, check_signed_query, sign_query
from connectors.shopify.session_token import SessionClaims, decode_session_token, encode_session_token
from connectors.shopify.shop_domain import normalise_shop_domain

__all__ = [
    "OAuthClient", "SessionClaims", "TokenSet", "authorize_url", "canonical_query", "check_signed_query",
    "decode_session_token", "encode_session_token", "normalise_shop_domain", "sign_query",
]
