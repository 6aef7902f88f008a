//! One number's effective webhook URLs, read from Twilio the way `numbers audit` reads them, for
//! `drill --number` to rehearse. I/O (the REST API); what "effective" means is [`super::audit`]'s.

use super::audit::{effective, Handling};
use super::rest::{Api, Credentials, Setup};
use super::wiring::Channel;

/// A number's effective handling per channel, as `drill --number` rehearses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillUrls {
    /// Voice (no URLs when a SIP trunk takes the calls).
    pub voice: Handling,
    /// Messaging.
    pub sms: Handling,
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
            Channel::Voice => out.voice = h,
            Channel::Sms => out.sms = h,
        }
    }
    Ok(out)
}
