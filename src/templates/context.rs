//! What a template can see: the request's parameters by their Twilio names (a `Name[]` parameter as
//! the list `Name`) and the config's `[vars]`.
//!
//! Also the list of parameter names Twilio documents, which `check` uses to catch a typo such as
//! `{{ Form }}`, and the sample parameter sets `check` renders every template with.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};

use crate::webhook::Params;

/// Values from the config's `[vars]`, shared by every render: made template values once ([`vars`]),
/// so a render takes a reference to each instead of a copy of its text.
pub type Vars = Arc<BTreeMap<String, Value>>;

/// The config's `[vars]` as every render sees them.
pub fn vars(config: &BTreeMap<String, String>) -> Vars {
    Arc::new(
        config
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
            .collect(),
    )
}

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
            return Some(v.clone());
        }
        // A repeated name shows its first value, as TwiML Bins do.
        if let Some(value) = self.params.get(key) {
            return Some(Value::from(value));
        }
        // `SipHeader_X-Account-Id` cannot be written as a variable (`-` is minus): `_` stands for
        // each `-` after the prefix, so `{{ SipHeader_X_Account_Id }}` reads it.
        if TWILIO_PARAM_PREFIXES.iter().any(|p| key.starts_with(p)) {
            return self
                .params
                .iter()
                .find(|(name, _)| {
                    name.len() == key.len()
                        && name
                            .bytes()
                            .zip(key.bytes())
                            .all(|(n, k)| n == k || (n == b'-' && k == b'_'))
                })
                .map(|(_, v)| Value::from(v));
        }
        // `Dest[]=…` sent several times (how Bins take a list, e.g. numbers to ring at once) is
        // the list `Dest`, each value escaped when written like any other.
        let list: Vec<Value> = self
            .params
            .iter()
            .filter(|(name, _)| name.strip_suffix("[]") == Some(key))
            .map(|(_, value)| Value::from(value))
            .collect();
        (!list.is_empty()).then(|| Value::from(list))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = self.vars.keys().map(|k| Value::from(k.as_str())).collect();
        keys.extend(self.params.iter().map(|(k, _)| Value::from(k)));
        Enumerator::Values(keys)
    }
}

/// Prefixes of the parameters Twilio names after SIP X-headers: `SipHeader_X-<name>` for those of
/// a call's `200 OK` (and of an INVITE into a SIP Domain), `DialSipHeader_X-<name>` for those of the
/// final response after `<Dial><Sip>`. Source:
/// <https://www.twilio.com/docs/voice/api/receiving-sip#sip-custom-headers> ("posted in the format
/// SipHeader_X-headername=headervalue ... DialSipHeader_X-headername=headervalue").
pub const TWILIO_PARAM_PREFIXES: &[&str] = &["SipHeader_", "DialSipHeader_"];

/// Request parameters Twilio documents for voice and messaging webhooks and their callbacks: what a
/// template may name besides `[vars]`, so that `check` can catch a typo such as `{{ Form }}`.
///
/// Gathered from Twilio's doc pages; each group names its pages (paths under
/// `https://www.twilio.com`). Twilio also sends headers as parameters under names it builds
/// ([`TWILIO_PARAM_PREFIXES`]), which no fixed list can hold; and it "will
/// occasionally add new parameters without advance notice" (messaging webhooks page), which is what
/// the config's `extra_params` is for.
pub const TWILIO_PARAMS: &[&str] = &[
    // Every webhook (voice and messaging), and the fallback URL's additions. Source:
    // /docs/voice/twiml#request-parameters, /docs/messaging/guides/webhook-request,
    // /docs/usage/webhooks/webhooks-connection-overrides.
    "AccountSid",
    "ApiVersion",
    "From",
    "To",
    "FromCity",
    "FromState",
    "FromZip",
    "FromCountry",
    "ToCity",
    "ToState",
    "ToZip",
    "ToCountry",
    "ErrorCode",
    "ErrorUrl",
    "ErrorMessage",
    "AddOns",
    // Voice, every request of a call. Source: /docs/voice/twiml#request-parameters.
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
    "StirVerstat",
    "StirPassportToken",
    // <Gather> action and partialResultCallback. Source: /docs/voice/twiml/gather#action,
    // #partialresultcallback.
    "Digits",
    "FinishedOnKey",
    "SpeechResult",
    "Confidence",
    "UnstableSpeechResult",
    "StableSpeechResult",
    "Stability",
    "SequenceNumber",
    "msg",
    // <Dial> action, including <Sip> (DialSipHeader_<name> X-headers come with their own names).
    // Source: /docs/voice/twiml/dial#action, /docs/voice/twiml/sip.
    "DialCallStatus",
    "DialCallSid",
    "DialCallDuration",
    "DialBridged",
    "DialSipCallId",
    "DialSipResponseCode",
    // <Record> action, transcribeCallback and recordingStatusCallback. Source:
    // /docs/voice/twiml/record#attributes-action, #transcribecallback, #recordingstatuscallback.
    "RecordingUrl",
    "RecordingSid",
    "RecordingDuration",
    "RecordingStatus",
    "RecordingChannels",
    "RecordingSource",
    "RecordingStartTime",
    "RecordingTrack",
    "TranscriptionSid",
    "TranscriptionText",
    "TranscriptionStatus",
    "TranscriptionUrl",
    // <Enqueue> action and waitUrl, <Queue> url. Source:
    // /docs/voice/twiml/enqueue#attributes-action, #attributes-wait-url,
    // /docs/voice/twiml/queue#attributes-url.
    "QueueResult",
    "QueueSid",
    "QueueTime",
    "QueuePosition",
    "AvgQueueTime",
    "CurrentQueueSize",
    "MaxQueueSize",
    "DequeingCallSid",
    // <Pay> action and statusCallback. Source: /docs/voice/twiml/pay#action, #statuscallback.
    "Result",
    "PaymentConfirmationCode",
    "PaymentToken",
    "ProfileId",
    "PaymentCardNumber",
    "PaymentCardType",
    "PaymentCardPostalCode",
    "ExpirationDate",
    "SecurityCode",
    "PaymentMethod",
    "BankAccountType",
    "BankAccountNumber",
    "BankRoutingNumber",
    "PaymentError",
    "ConnectorError",
    "For",
    "Attempt",
    "Capture",
    "PartialResult",
    "Required",
    "ErrorType",
    // <Refer> action. Source: /docs/voice/twiml/refer#action.
    "ReferCallStatus",
    "ReferSipResponseCode",
    "NotifySipResponseCode",
    // Call status callbacks and answering machine detection. Source: /docs/voice/api/call-
    // resource#statuscallback, /docs/voice/answering-machine-detection.
    "CallDuration",
    "Duration",
    "Timestamp",
    "CallbackSource",
    "SipResponseCode",
    "AnsweredBy",
    "MachineDetectionDuration",
    // SIP calls into a SIP Domain (SipHeader_<name> X-headers come with their own names). Source:
    // /docs/voice/api/receiving-sip.
    "SipCallId",
    "SipDomain",
    "SipDomainSid",
    "SipSourceIp",
    // <Conference> statusCallback. Source:
    // /docs/voice/twiml/conference#attributes-status-callback- parameters.
    "ConferenceSid",
    "FriendlyName",
    "StatusCallbackEvent",
    "Muted",
    "Hold",
    "Coaching",
    "EndConferenceOnExit",
    "StartConferenceOnEnter",
    "CallSidEndingConference",
    "ParticipantLabelEndingConference",
    "ReasonConferenceEnded",
    "Reason",
    "ParticipantLabel",
    // <Connect><ConversationRelay> action and <Start><Stream> statusCallback. Source:
    // /docs/voice/twiml/connect/conversationrelay, /docs/voice/twiml/stream#statuscallback.
    "SessionId",
    "SessionStatus",
    "SessionDuration",
    "HandoffData",
    "StreamSid",
    "StreamName",
    "StreamEvent",
    "StreamError",
    // Messaging, incoming message. Source: /docs/messaging/guides/webhook-request.
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "MessagingServiceSid",
    "Body",
    "NumMedia",
    "NumSegments",
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
    // WhatsApp and other channels. Source:
    // /docs/messaging/guides/webhook-request#whatsapp-specific- parameters, /docs/whatsapp/api.
    "ProfileName",
    "WaId",
    "Forwarded",
    "FrequentlyForwarded",
    "ButtonPayload",
    "ButtonText",
    "ButtonType",
    "InteractiveData",
    "FlowData",
    "MessageType",
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
    // Messaging status callbacks and opt-out. Source:
    // /docs/messaging/guides/track-outbound-message- status,
    // /docs/messaging/tutorials/advanced-opt-out.
    "MessageStatus",
    "SmsStatus",
    "RawDlrDoneDate",
    "ChannelInstallSid",
    "ChannelPrefix",
    "ChannelToAddress",
    "EventType",
    "OptOutType",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_header_parameters_read_with_underscores() {
        let params: Params = [
            ("SipHeader_X-Account-Id", "42"),
            ("DialSipHeader_X-Reason", "busy"),
            ("Foo-Bar", "no"),
        ]
        .into_iter()
        .collect();
        let ctx = Value::from_object(RenderContext::new(Arc::default(), Arc::new(params)));
        let env = crate::templates::new_environment();
        let out = env
            .render_str(
                "{{ SipHeader_X_Account_Id }}/{{ DialSipHeader_X_Reason }}/{{ Foo_Bar }}/\
                 {{ SipHeader_X_Other }}",
                ctx,
            )
            .unwrap();
        assert_eq!(out, "42/busy//");
    }
}
