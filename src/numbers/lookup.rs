//! One number's effective webhook URLs, read from Twilio the way `numbers audit` reads them, for
//! `drill --number` to rehearse. I/O (the REST API); what "effective" means is [`super::audit`]'s.

use super::audit::effective;
use super::rest::{Api, Credentials, Setup};
use super::wiring::Channel;

/// A number's effective URLs, as `drill --number` rehearses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillUrls {
    /// Voice primary URL (none when a SIP trunk takes the calls).
    pub primary: Option<String>,
    /// Voice fallback URL.
    pub fallback: Option<String>,
    /// Messaging primary URL.
    pub sms_primary: Option<String>,
    /// Messaging fallback URL.
    pub sms_fallback: Option<String>,
    /// Who handles what, for the operator (`voice: App AP…`).
    pub notes: Vec<String>,
}

/// Reads `number`'s wiring from Twilio (`api_base` replaces Twilio's address, for tests) and
/// returns the URLs Twilio would call.
pub async fn drill_urls(
    number: &str,
    credentials: Credentials,
    api_base: Option<String>,
) -> Result<DrillUrls, String> {
    let api = Api::new(Setup {
        credentials,
        api_base,
        rate: 10.0,
    })?;
    let account = api.fetch(Some(number)).await.map_err(|e| e.to_string())?;
    let n = account
        .numbers
        .iter()
        .find(|n| n.phone_number == number)
        .ok_or_else(|| format!("number: {number} is not in account {}", api.account))?;
    let mut out = DrillUrls::default();
    for channel in [Channel::Voice, Channel::Sms] {
        let (source, h) = effective(&account, n, channel);
        out.notes.push(format!(
            "{}: handled by {}",
            channel.as_str(),
            source.label()
        ));
        match channel {
            Channel::Voice => {
                out.primary = h.url;
                out.fallback = h.fallback_url;
            }
            Channel::Sms => {
                out.sms_primary = h.url;
                out.sms_fallback = h.fallback_url;
            }
        }
    }
    Ok(out)
}
