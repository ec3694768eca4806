"""All models, importable from one place so the metadata is complete for migrations."""
from app.models.automations import ApiToken, AutomationDecision, SegmentMember, Signal
from app.models.base import Base, TenantScoped, utcnow
from app.models.commerce import Cart, CartLine, Customer, Order, OrderLine, Product
from app.models.events import InboundEvent
from app.models.flows import CustomerTag, Flow, FlowRun, FlowVersion, Segment, Tag
from app.models.jobs import ClockLease, Job, JobKindThrottle
from app.models.messaging import (Consent, Coupon, DeliveryAttempt, Message, MessagePreference, PushSubscription,
                                  Suppression)
from app.models.product_alerts import ProductAlert
from app.models.shipping import CourierAccount, CourierPickup, LabelBatch, Shipment, TrackingEvent
from app.models.shop import Shop, ShopAlert
from app.models.storefront import DoubleOptIn, PushOptIn, RateLimitCounter, StorefrontEvent, StorefrontVisitor
from app.models.sync import ApiRateBucket, DataExport, OAuthState, ReturnRequest, SyncRun

__all__ = [
    "Base", "TenantScoped", "utcnow", "Shop", "ShopAlert", "Customer", "Order", "OrderLine", "Cart", "CartLine", "Product",
    "InboundEvent", "Job", "JobKindThrottle", "ClockLease", "Flow", "FlowVersion", "FlowRun", "Segment", "Tag",
    "CustomerTag", "Message", "DeliveryAttempt", "Consent", "MessagePreference", "Suppression", "PushSubscription", "Coupon",
    "Shipment", "TrackingEvent", "LabelBatch", "CourierAccount", "CourierPickup", "OAuthState", "SyncRun", "ReturnRequest", "DataExport", "ApiRateBucket",
    "Signal", "AutomationDecision", "ApiToken", "SegmentMember", "ProductAlert",
    "StorefrontVisitor", "StorefrontEvent", "DoubleOptIn", "PushOptIn", "RateLimitCounter",
]
