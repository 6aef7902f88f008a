//! The account's resources as Twilio's REST API describes them (field names from its OpenAPI
//! description): incoming phone numbers, TwiML Apps, Messaging Services and which numbers each
//! Service holds. Plain data, deserialized from the API's JSON; pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `IncomingPhoneNumbers/{Sid}.json`: the fields that decide where calls and messages go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Number {
    /// `PN…`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// The name the account gave it.
    pub friendly_name: Option<String>,
    /// "A call comes in".
    pub voice_url: Option<String>,
    /// Its method.
    pub voice_method: Option<String>,
    /// Voice "Primary handler fails".
    pub voice_fallback_url: Option<String>,
    /// Its method.
    pub voice_fallback_method: Option<String>,
    /// "A message comes in".
    pub sms_url: Option<String>,
    /// Its method.
    pub sms_method: Option<String>,
    /// Messaging "Primary handler fails".
    pub sms_fallback_url: Option<String>,
    /// Its method.
    pub sms_fallback_method: Option<String>,
    /// "Call status changes".
    pub status_callback: Option<String>,
    /// Its method.
    pub status_callback_method: Option<String>,
    /// A TwiML App (`AP…`) whose voice URLs Twilio uses instead of the number's.
    pub voice_application_sid: Option<String>,
    /// A TwiML App whose messaging URLs Twilio uses instead (a Messaging Service sets its `MG…` here).
    pub sms_application_sid: Option<String>,
    /// An Elastic SIP Trunk (`TK…`): calls go to the trunk, not to a voice webhook.
    pub trunk_sid: Option<String>,
}

/// `Applications/{Sid}.json`: a TwiML App.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Application {
    /// `AP…`.
    pub sid: String,
    /// The name the account gave it.
    pub friendly_name: Option<String>,
    /// Voice URL.
    pub voice_url: Option<String>,
    /// Its method.
    pub voice_method: Option<String>,
    /// Voice fallback URL.
    pub voice_fallback_url: Option<String>,
    /// Its method.
    pub voice_fallback_method: Option<String>,
    /// Call status callback.
    pub status_callback: Option<String>,
    /// Its method.
    pub status_callback_method: Option<String>,
    /// Messaging URL.
    pub sms_url: Option<String>,
    /// Its method.
    pub sms_method: Option<String>,
    /// Messaging fallback URL.
    pub sms_fallback_url: Option<String>,
    /// Its method.
    pub sms_fallback_method: Option<String>,
}

/// `messaging.twilio.com/v1/Services/{Sid}`: a Messaging Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Service {
    /// `MG…`.
    pub sid: String,
    /// The name the account gave it.
    pub friendly_name: Option<String>,
    /// Where incoming messages go (unless the Service defers to the number).
    pub inbound_request_url: Option<String>,
    /// Its method.
    pub inbound_method: Option<String>,
    /// Where they go when that fails.
    pub fallback_url: Option<String>,
    /// Its method.
    pub fallback_method: Option<String>,
    /// True: incoming messages use the number's own messaging URLs, not the Service's.
    pub use_inbound_webhook_on_number: Option<bool>,
}

/// `Services/{ServiceSid}/PhoneNumbers`: one number in a Service (`sid` is the number's `PN…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceNumber {
    /// The number's `PN…`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
}

/// Everything audit and plan read, fetched once.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// Incoming phone numbers, in the API's order.
    pub numbers: Vec<Number>,
    /// TwiML Apps by `AP…`.
    pub applications: BTreeMap<String, Application>,
    /// Messaging Services by `MG…`.
    pub services: BTreeMap<String, Service>,
    /// The Service (`MG…`) each number (`PN…`) belongs to.
    pub service_of: BTreeMap<String, String>,
}

/// A URL or method field as set: Twilio reports unset ones as `null` or `""`.
pub fn set(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
