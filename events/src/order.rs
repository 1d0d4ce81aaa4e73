//! The order event: one change of one order, sent by the shop backend (key: order id).
//!
//! `event_id` is the client's idempotency key: sending the same event twice (a retry after a
//! 503) stores it once downstream.

use serde::{Deserialize, Serialize};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, not paid.
    Created,
    /// Paid.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Called off before shipping.
    Cancelled,
    /// Money returned.
    Refunded,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    /// Product id.
    pub product_id: String,
    /// Stock-keeping unit.
    #[serde(default)]
    pub sku: String,
    /// Units ordered, at least 1.
    pub quantity: u32,
    /// Price of one unit in minor units (cents).
    pub unit_price: i64,
}

/// Money totals of an order, in minor units.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Sum of the lines.
    pub subtotal: i64,
    /// Tax.
    #[serde(default)]
    pub tax: i64,
    /// Shipping.
    #[serde(default)]
    pub shipping: i64,
    /// Discount (positive: taken off).
    #[serde(default)]
    pub discount: i64,
    /// What the customer pays: subtotal + tax + shipping − discount.
    pub total: i64,
}

/// One order event as the shop sends it and as it travels on the orders topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderEvent {
    /// Schema version (the edge sets it).
    #[serde(default = "crate::schema_version")]
    pub v: u16,
    /// The client's idempotency key for this event.
    pub event_id: String,
    /// The order's id.
    pub order_id: String,
    /// The order's human-facing code.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order_code: String,
    /// The customer's id.
    pub customer_id: String,
    /// The order's status after this event.
    pub status: OrderStatus,
    /// The lines.
    pub items: Vec<LineItem>,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Money totals.
    pub totals: Totals,
    /// Sales channel (`web`, `app`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The click (event id from a redirect's `X-Request-Id`) this order is attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<u64>,
    /// The short-link code this order is attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_code: Option<String>,
    /// When it happened, RFC 3339.
    pub time: String,
    /// When the edge accepted it, ms since the Unix epoch (the edge sets it).
    #[serde(default)]
    pub received_ms: u64,
}

/// One thing wrong with an event: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Field path, e.g. `items[1].quantity`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { path: path.into(), message: message.into() }
}

fn check_id(errors: &mut Vec<FieldError>, path: &str, value: &str, max: usize) {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        errors.push(err(path, format!("must be 1 to {max} bytes without control characters")));
    }
}

impl OrderEvent {
    /// Everything wrong with the event beyond its JSON shape; empty when it is valid.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_id(&mut errors, "event_id", &self.event_id, 128);
        check_id(&mut errors, "order_id", &self.order_id, 128);
        check_id(&mut errors, "customer_id", &self.customer_id, 128);
        if !self.order_code.is_empty() {
            check_id(&mut errors, "order_code", &self.order_code, 128);
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(err("currency", format!("'{}' is not an ISO 4217 code such as EUR", self.currency)));
        }
        if self.items.is_empty() {
            errors.push(err("items", "an order has at least one line"));
        }
        if self.items.len() > 1000 {
            errors.push(err("items", "at most 1000 lines"));
        }
        let mut subtotal: i64 = 0;
        for (i, item) in self.items.iter().enumerate() {
            check_id(&mut errors, &format!("items[{i}].product_id"), &item.product_id, 128);
            if item.quantity == 0 {
                errors.push(err(format!("items[{i}].quantity"), "must be at least 1"));
            }
            if item.unit_price < 0 {
                errors.push(err(format!("items[{i}].unit_price"), "must not be negative"));
            }
            subtotal = subtotal.saturating_add(item.unit_price.saturating_mul(i64::from(item.quantity)));
        }
        let t = &self.totals;
        for (name, value) in [("tax", t.tax), ("shipping", t.shipping), ("discount", t.discount)] {
            if value < 0 {
                errors.push(err(format!("totals.{name}"), "must not be negative"));
            }
        }
        if !self.items.is_empty() && t.subtotal != subtotal {
            errors.push(err("totals.subtotal", format!("is {} but the lines add up to {subtotal}", t.subtotal)));
        }
        let expected = t.subtotal.saturating_add(t.tax).saturating_add(t.shipping).saturating_sub(t.discount);
        if t.total != expected {
            errors.push(err(
                "totals.total",
                format!("is {} but subtotal + tax + shipping - discount is {expected}", t.total),
            ));
        }
        if let Some(code) = &self.link_code {
            check_id(&mut errors, "link_code", code, 64);
        }
        if self.channel.len() > 64 {
            errors.push(err("channel", "at most 64 bytes"));
        }
        errors
    }
}

/// Decodes one event, naming the field path of a shape error (`items[0].quantity: invalid type`).
pub fn decode_order(json: &[u8]) -> Result<OrderEvent, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde's message ends with " at line L column C", which means little inside one event.
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        FieldError { path: if path == "." { String::new() } else { path }, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","order_id":"o1","customer_id":"c1","status":"paid","currency":"EUR",
        "items":[{"product_id":"p1","sku":"S1","quantity":2,"unit_price":1500},{"product_id":"p2","quantity":1,"unit_price":500}],
        "totals":{"subtotal":3500,"tax":665,"shipping":0,"discount":500,"total":3665},"time":"2026-11-01T10:00:00Z","link_code":"spring"}"#;

    #[test]
    fn a_well_formed_event_has_no_problems() {
        let event = decode_order(GOOD.as_bytes()).unwrap();
        assert_eq!(event.v, crate::SCHEMA_VERSION);
        assert_eq!(event.problems(), vec![]);
    }

    #[test]
    fn shape_errors_name_the_field_path() {
        let bad = GOOD.replace(r#""quantity":1,"#, r#""quantity":"one","#);
        let error = decode_order(bad.as_bytes()).unwrap_err();
        assert_eq!(error.path, "items[1].quantity");
        let bad = GOOD.replace(r#""status":"paid""#, r#""status":"lost""#);
        assert_eq!(decode_order(bad.as_bytes()).unwrap_err().path, "status");
        let missing = GOOD.replace(r#""order_id":"o1","#, "");
        assert!(decode_order(missing.as_bytes()).unwrap_err().message.contains("order_id"));
    }

    #[test]
    fn totals_that_do_not_add_up_are_named() {
        let bad =
            GOOD.replace(r#""total":3665"#, r#""total":3000"#).replace(r#""currency":"EUR""#, r#""currency":"euro""#);
        let paths: Vec<String> = decode_order(bad.as_bytes()).unwrap().problems().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["currency", "totals.total"]);
        let bad = GOOD.replace(r#""unit_price":500"#, r#""unit_price":-5"#);
        let paths: Vec<String> = decode_order(bad.as_bytes()).unwrap().problems().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["items[1].unit_price", "totals.subtotal"]);
    }
}
