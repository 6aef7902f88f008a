//! Which kind of webhook a TwiML answer is for: the verbs allowed differ. Pure.

/// Which kind of webhook a template answers; the allowed verbs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Programmable Voice: `<Say>`, `<Gather>`, `<Dial>`, ...
    Voice,
    /// Programmable Messaging: `<Message>` and `<Redirect>`.
    Messaging,
}

impl Channel {
    /// The name the schema file and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Messaging => "messaging",
        }
    }

    /// The channel a webhook's answer is judged for: voice with a `CallSid`, messaging with a
    /// `MessageSid`, unknown (well-formedness and the `<Response>` root only) otherwise.
    pub fn of_webhook(call_sid: Option<&str>, message_sid: Option<&str>) -> Option<Channel> {
        match (call_sid, message_sid) {
            (Some(_), _) => Some(Channel::Voice),
            (None, Some(_)) => Some(Channel::Messaging),
            (None, None) => None,
        }
    }
}
