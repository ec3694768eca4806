"""The GraphQL documents we send, each with an operation name (logs and the fake server dispatch on it)."""
from __future__ import annotations

import json

_MONEY = "{ shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }"
_ADDRESS = "{ name firstName lastName company address1 address2 city zip province countryCodeV2 phone }"
_PAGE_INFO = "pageInfo { hasNextPage endCursor }"


def order_fields(api_version: str) -> str:
    # cartToken and checkoutToken exist on the GraphQL Order from 2026-07 only.
    tokens = " cartToken checkoutToken" if api_version >= "2026-07" else ""
    return (f"id name email phone createdAt processedAt updatedAt cancelledAt displayFinancialStatus "
            f"displayFulfillmentStatus paymentGatewayNames{tokens} totalPriceSet {_MONEY} subtotalPriceSet {_MONEY} "
            f"totalShippingPriceSet {_MONEY} totalTaxSet {_MONEY} totalDiscountsSet {_MONEY} customer {{ id }} "
            f"shippingLine {{ title }} shippingAddress {_ADDRESS} billingAddress {_ADDRESS}")


# What a customer needs to pay an order now (asked only when a message will carry it): Order.paymentCollectionDetails
# .additionalPaymentCollectionUrl ("The URL to use for collecting an additional payment on the order", read_orders)
# and Order.statusPageUrl (since 2024-10; protected customer data level 2, like the order's email and phone).
ORDER_PAYMENT_FIELDS = "paymentCollectionDetails { additionalPaymentCollectionUrl } statusPageUrl"
ORDER_LINE_FIELDS = (f"id name title quantity sku originalUnitPriceSet {_MONEY} "
                     f"discountAllocations {{ allocatedAmountSet {_MONEY} }} product {{ id }} variant {{ id }}")
CUSTOMER_FIELDS = ("id firstName lastName locale updatedAt numberOfOrders amountSpent { amount currencyCode } "
                   "defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt } "
                   "defaultPhoneNumber { phoneNumber marketingState marketingOptInLevel marketingUpdatedAt "
                   "marketingCollectedFrom }")
CHECKOUT_FIELDS = (f"id abandonedCheckoutUrl createdAt updatedAt completedAt totalPriceSet {_MONEY} "
                   f"shippingAddress {{ phone }} "
                   f"customer {{ id defaultEmailAddress {{ emailAddress }} defaultPhoneNumber {{ phoneNumber }} }}")
CHECKOUT_LINE_FIELDS = (f"id title variantTitle quantity sku originalUnitPriceSet {_MONEY} product {{ id }} "
                        f"variant {{ id }} image {{ url }}")
PRODUCT_FIELDS = ("id title handle status createdAt updatedAt onlineStoreUrl tracksInventory totalInventory "
                  "priceRangeV2 { minVariantPrice { amount currencyCode } } "
                  "featuredMedia { preview { image { url } } }")


def updated_since_query(operation: str, connection: str, fields: str, *, sort_key: str,
                        lines: tuple[str, str] | None = None) -> str:
    """A page of `connection` filtered by `$query`, with at most `$lines` children per node."""
    child = f" {lines[0]}(first: $lines) {{ nodes {{ {lines[1]} }} {_PAGE_INFO} }}" if lines else ""
    lines_variable = ", $lines: Int!" if lines else ""
    return (f"query {operation}($first: Int!, $after: String, $query: String!{lines_variable}) {{ "
            f"{connection}(first: $first, after: $after, query: $query, sortKey: {sort_key}) {{ "
            f"nodes {{ {fields}{child} }} {_PAGE_INFO} }} }}")


def remaining_lines_query(operation: str, node_type: str, connection: str, fields: str) -> str:
    """The line items of one node after a cursor, for nodes with more lines than a page carried."""
    return (f"query {operation}($id: ID!, $after: String) {{ node(id: $id) {{ ... on {node_type} {{ "
            f"{connection}(first: 250, after: $after) {{ nodes {{ {fields} }} {_PAGE_INFO} }} }} }} }}")


def bulk_query(connection: str, fields: str, search: str | None, child: tuple[str, str] | None) -> str:
    """A bulk query document: one top-level connection, at most one child connection (two levels)."""
    arguments = f"(query: {json.dumps(search)})" if search else ""
    child_part = f" {child[0]} {{ edges {{ node {{ {child[1]} }} }} }}" if child else ""
    return f"{{ {connection}{arguments} {{ edges {{ node {{ {fields}{child_part} }} }} }} }}"


def bulk_run_mutation(api_version: str) -> str:
    # From 2026-01 Shopify stops grouping children under their parent unless asked; our stream reader needs it.
    grouping = ", groupObjects: true" if api_version >= "2026-01" else ""
    return ("mutation BulkOperationRunQuery($query: String!) { "
            f"bulkOperationRunQuery(query: $query{grouping}) {{ bulkOperation {{ id status }} "
            "userErrors { field message code } } }")


BULK_OPERATION = ("query BulkOperation($id: ID!) { node(id: $id) { ... on BulkOperation { "
                  "id status errorCode objectCount url partialDataUrl } } }")

WEBHOOK_SUBSCRIPTIONS = ("query WebhookSubscriptions($first: Int!, $after: String) { "
                         "webhookSubscriptions(first: $first, after: $after) { nodes { id topic uri } "
                         f"{_PAGE_INFO} }} }}")
WEBHOOK_SUBSCRIPTION_CREATE = (
    "mutation WebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, "
    "$webhookSubscription: WebhookSubscriptionInput!) { "
    "webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) { "
    "webhookSubscription { id topic uri } userErrors { field message } } }")
WEBHOOK_SUBSCRIPTION_DELETE = ("mutation WebhookSubscriptionDelete($id: ID!) { webhookSubscriptionDelete(id: $id) { "
                               "deletedWebhookSubscriptionId userErrors { field message } } }")

ORDER_FULFILLMENT_ORDERS = (
    "query OrderFulfillmentOrders($id: ID!) { order(id: $id) { id fulfillmentOrders(first: 50) { nodes { "
    "id status assignedLocation { location { id } } lineItems(first: 250) { nodes { id remainingQuantity } } "
    "} } } }")
FULFILLMENT_CREATE = ("mutation FulfillmentCreate($fulfillment: FulfillmentInput!, $message: String) { "
                      "fulfillmentCreate(fulfillment: $fulfillment, message: $message) { "
                      "fulfillment { id status } userErrors { field message } } }")

DISCOUNT_CODE_BASIC_CREATE = (
    "mutation DiscountCodeBasicCreate($basicCodeDiscount: DiscountCodeBasicInput!) { "
    "discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) { codeDiscountNode { id } "
    "userErrors { field code message } } }")
