//! Consumer handlers: the SKU catalogue from `InventoryAdjusted`
//! ([`OnInventoryAdjusted`]), the saga's progress from the other services'
//! events ([`OnSagaEvents`], one batch handler for all of them so that a
//! batch mixing their types is applied in one call), and the saga deadline
//! ([`deadline`]), which acts on time instead of on an event. The order
//! journal, a projection of every saga event, has its own consumer group
//! ([`OnJournalEvents`]).

pub mod deadline;
mod inventory_adjusted;
mod journal;
mod saga_events;

pub use inventory_adjusted::OnInventoryAdjusted;
pub use journal::{
    journal_event_types, recorded_events, OnJournalEvents, EVENTS_PER_RECORD, EVENTS_RECORDED,
    EVENT_RECORDED,
};
pub use saga_events::OnSagaEvents;

pub use crate::domain::saga::ORDER_CONFIRMATION;

use orderflow_events::EventType;

/// Event types [`OnSagaEvents`] handles.
pub const ORDER_EVENT_TYPES: &[EventType] = &[
    EventType::InventoryReserved,
    EventType::InventoryReservationFailed,
    EventType::InventoryReleased,
    EventType::PaymentProcessed,
    EventType::PaymentFailed,
    EventType::PaymentRefunded,
    EventType::ShippingCreated,
    EventType::ShippingDispatched,
    EventType::ShippingDelivered,
    EventType::ShippingCancelled,
    EventType::ShippingCancellationRejected,
    EventType::NotificationSent,
    EventType::NotificationFailed,
];
