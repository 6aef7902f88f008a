//! What a template can see: the request's parameters by their Twilio names and the config's `[vars]`.
//!
//! Also the list of parameter names Twilio documents, which `check` uses to catch a typo such as
//! `{{ Form }}`, and the sample parameter sets `check` renders every template with.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};

use crate::webhook::Params;

/// Values from the config's `[vars]`, shared by every render.
pub type Vars = Arc<BTreeMap<String, String>>;

/// The variables of one render: `[vars]` first (a caller cannot override them), then parameters.
#[derive(Debug)]
pub struct RenderContext {
    vars: Vars,
    params: Arc<Params>,
}

impl RenderContext {
    /// Builds a context from the config's vars and a request's parameters.
    pub fn new(vars: Vars, params: Arc<Params>) -> Self {
        RenderContext { vars, params }
    }
}

impl Object for RenderContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if let Some(v) = self.vars.get(key) {
            return Some(Value::from(v.as_str()));
        }
        // A repeated name shows its first value, as TwiML Bins do.
        self.params.get(key).map(Value::from)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = self.vars.keys().map(|k| Value::from(k.as_str())).collect();
        keys.extend(self.params.iter().map(|(k, _)| Value::from(k)));
        Enumerator::Values(keys)
    }
}

/// Request parameters Twilio documents for voice and messaging webhooks (and their callbacks).
pub const TWILIO_PARAMS: &[&str] = &[
    // Every webhook.
    "AccountSid",
    "ApiVersion",
    "From",
    "To",
    "ErrorCode",
    "ErrorUrl",
    // Voice.
    "CallSid",
    "CallStatus",
    "Direction",
    "ForwardedFrom",
    "CallerName",
    "ParentCallSid",
    "CallToken",
    "Caller",
    "Called",
    "CallerCity",
    "CallerState",
    "CallerZip",
    "CallerCountry",
    "CalledCity",
    "CalledState",
    "CalledZip",
    "CalledCountry",
    "FromCity",
    "FromState",
    "FromZip",
    "FromCountry",
    "ToCity",
    "ToState",
    "ToZip",
    "ToCountry",
    "StirVerstat",
    "StirPassportToken",
    "Digits",
    "FinishedOnKey",
    "SpeechResult",
    "Confidence",
    "DialCallStatus",
    "DialCallSid",
    "DialCallDuration",
    "DialBridged",
    "RecordingUrl",
    "RecordingSid",
    "RecordingDuration",
    "RecordingStatus",
    "TranscriptionText",
    "TranscriptionStatus",
    "CallDuration",
    "Duration",
    "QueueResult",
    "QueueSid",
    "QueueTime",
    "SipCallId",
    "SipDomain",
    "SipDomainSid",
    "AnsweredBy",
    "msg",
    // Messaging.
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "MessagingServiceSid",
    "Body",
    "NumMedia",
    "NumSegments",
    "MessageStatus",
    "SmsStatus",
    "OptOutType",
    "ProfileName",
    "WaId",
    "Forwarded",
    "FrequentlyForwarded",
    "ButtonPayload",
    "ButtonText",
    "ButtonType",
    "InteractiveData",
    "FlowData",
    "ChannelMetadata",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "ReferralBody",
    "ReferralHeadline",
    "ReferralSourceId",
    "ReferralSourceType",
    "ReferralSourceUrl",
    "ReferralMediaId",
    "ReferralMediaContentType",
    "ReferralMediaUrl",
    "ReferralNumMedia",
    "ReferralCtwaClid",
    "OriginalRepliedMessageSender",
    "OriginalRepliedMessageSid",
    "AddOns",
    "MediaUrl0",
    "MediaUrl1",
    "MediaUrl2",
    "MediaUrl3",
    "MediaUrl4",
    "MediaUrl5",
    "MediaUrl6",
    "MediaUrl7",
    "MediaUrl8",
    "MediaUrl9",
    "MediaContentType0",
    "MediaContentType1",
    "MediaContentType2",
    "MediaContentType3",
    "MediaContentType4",
    "MediaContentType5",
    "MediaContentType6",
    "MediaContentType7",
    "MediaContentType8",
    "MediaContentType9",
];

/// Values `check` injects where a caller could put anything: markup, quotes, forbidden characters.
pub const HOSTILE_TEXT: &str =
    "</Message><Redirect>http://evil.example/</Redirect><Message> \"' & \u{1}\u{B} 😀";

fn pairs(list: &[(&str, &str)]) -> Params {
    list.iter().copied().collect()
}

/// Parameter sets a voice template is rendered with during `check`: one per keypress, plus none.
pub fn voice_samples() -> Vec<Params> {
    let base = pairs(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA00000000000000000000000000000000"),
        ("CallStatus", "in-progress"),
        ("Direction", "inbound"),
        ("From", "+15550100000"),
        ("To", "+15550199999"),
        ("Caller", "+15550100000"),
        ("Called", "+15550199999"),
        ("FromCity", "L'Aquila & <Co>"),
        ("CallerName", HOSTILE_TEXT),
        ("SpeechResult", HOSTILE_TEXT),
        ("RecordingUrl", "https://api.twilio.com/recording?x=1&y=<2>"),
        ("DialCallStatus", "no-answer"),
        ("ErrorCode", "11205"),
        ("ErrorUrl", "https://primary.example.com/voice?a=1&b=2"),
    ]);
    let mut samples = vec![Params::new(), base.clone()];
    for digit in [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "0",
        "*",
        "#",
        HOSTILE_TEXT,
    ] {
        let mut s = base.clone();
        s.push("Digits", digit);
        samples.push(s);
    }
    samples
}

/// Parameter sets a messaging template is rendered with during `check`.
pub fn messaging_samples() -> Vec<Params> {
    let base = pairs(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("MessageSid", "SM00000000000000000000000000000000"),
        ("SmsSid", "SM00000000000000000000000000000000"),
        ("From", "+15550100000"),
        ("To", "+15550199999"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("ErrorCode", "11205"),
        ("ErrorUrl", "https://primary.example.com/sms"),
    ]);
    let mut samples = vec![Params::new()];
    for body in ["", "HELP", "STOP", "hello", HOSTILE_TEXT] {
        let mut s = base.clone();
        s.push("Body", body);
        samples.push(s);
    }
    samples
}
