//! What `journal stats|list|show` print, as text for people or JSON for scripts. Pure.

use serde_json::json;

use super::time::rfc3339;
use super::{Event, Stats};

/// `journal stats` as text.
pub fn stats_text(stats: &Stats, now_ms: i64) -> String {
    let oldest = match stats.oldest_undelivered_ms {
        Some(t) => format!("{} ({} ago)", rfc3339(t), age(now_ms - t)),
        None => "-".into(),
    };
    format!(
        "total        {}\nundelivered  {}\ndelivered    {}\noldest undelivered  {oldest}\n",
        stats.total, stats.undelivered, stats.delivered
    )
}

/// `journal stats` as JSON (one object and a newline).
pub fn stats_json(stats: &Stats, now_ms: i64) -> String {
    let age = stats
        .oldest_undelivered_ms
        .map(|t| (now_ms - t).max(0) as f64 / 1000.0);
    json!({
        "total": stats.total,
        "undelivered": stats.undelivered,
        "delivered": stats.delivered,
        "oldest_undelivered_ms": stats.oldest_undelivered_ms,
        "oldest_undelivered": stats.oldest_undelivered_ms.map(rfc3339),
        "oldest_undelivered_age_seconds": age,
    })
    .to_string()
        + "\n"
}

fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > max {
        clean
            .chars()
            .take(max.saturating_sub(1))
            .collect::<String>()
            + "…"
    } else {
        clean
    }
}

/// `delivered`, `retrying(N)` after N failed attempts, or `unsent`: nothing has tried to deliver
/// it, which is all the journal can tell (only `serve --forward-to` sends events; without it they
/// stay `unsent`, and no attempt is scheduled).
fn state(e: &Event) -> String {
    match e.delivered_at_ms {
        Some(_) => "delivered".into(),
        None if e.attempts > 0 => format!("retrying({})", e.attempts),
        None => "unsent".into(),
    }
}

/// When the forwarder tries again: only after a failed attempt. The column holds the receipt time
/// for an event never tried, which is no appointment anyone keeps.
fn next_attempt(e: &Event) -> Option<i64> {
    (e.delivered_at_ms.is_none() && e.attempts > 0).then_some(e.next_attempt_at_ms)
}

/// What `journal show` says for an id it does not find. Ids are never reused, and a duplicate
/// webhook takes none, so a missing id within the range was deleted or never committed.
pub fn no_event(id: i64) -> String {
    format!(
        "no event {id}: not in this journal (ids are never reused; a gap is an event deleted by \
         --journal-retention, or on PostgreSQL an id a write that was rolled back, or lost a race \
         with another replica over the same webhook, used up); `journal list` shows the events it \
         holds"
    )
}

/// `journal list` as text: one line per event.
pub fn list_text(events: &[Event]) -> String {
    let mut out = format!(
        "{:>8}  {:<24}  {:<8}  {:<6} {:<20}  {:<13}  {}\n",
        "ID", "RECEIVED", "ROLE", "METHOD", "PATH", "STATE", "IDEMPOTENCY KEY"
    );
    for e in events {
        out.push_str(&format!(
            "{:>8}  {:<24}  {:<8}  {:<6} {:<20}  {:<13}  {}\n",
            e.id,
            rfc3339(e.webhook.received_at_ms),
            e.webhook.role.as_str(),
            e.webhook.method,
            one_line(&e.webhook.path, 20),
            state(e),
            one_line(&e.webhook.idempotency_key, 60),
        ));
    }
    out
}

/// `journal list` as JSON: one object per line.
pub fn list_json(events: &[Event]) -> String {
    events.iter().map(|e| event_json(e) + "\n").collect()
}

/// One event as a JSON object (without a newline).
pub fn event_json(e: &Event) -> String {
    let params: Vec<[&str; 2]> = e
        .webhook
        .params
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    json!({
        "id": e.id,
        "received_at": rfc3339(e.webhook.received_at_ms),
        "received_at_ms": e.webhook.received_at_ms,
        "role": e.webhook.role,
        "method": e.webhook.method,
        "url": e.webhook.url,
        "path": e.webhook.path,
        "params": params,
        "error_code": e.webhook.error_code,
        "error_url": e.webhook.error_url,
        "idempotency_key": e.webhook.idempotency_key,
        "conversation": e.webhook.conversation,
        "account_sid": e.webhook.account_sid,
        "delivered_at": e.delivered_at_ms.map(rfc3339),
        "attempts": e.attempts,
        "state": state(e),
        "next_attempt_at": next_attempt(e).map(rfc3339),
        "last_error": e.last_error,
    })
    .to_string()
}

/// `journal show` as text: every field, then every parameter on its own line.
pub fn show_text(e: &Event) -> String {
    let opt = |v: &Option<String>| v.as_deref().map_or("-".to_string(), |s| one_line(s, 500));
    let mut out = format!(
        "id               {}\nreceived         {}\nrole             {}\nmethod           {}\n\
         url              {}\nidempotency key  {}\nconversation     {}\naccount          {}\n\
         error code       {}\nerror url        {}\nstate            {}\ndelivered        {}\n\
         attempts         {}\nnext attempt     {}\nlast error       {}\nparams:\n",
        e.id,
        rfc3339(e.webhook.received_at_ms),
        e.webhook.role.as_str(),
        e.webhook.method,
        one_line(&e.webhook.url, 500),
        one_line(&e.webhook.idempotency_key, 500),
        one_line(&e.webhook.conversation, 500),
        opt(&e.webhook.account_sid),
        opt(&e.webhook.error_code),
        opt(&e.webhook.error_url),
        state(e),
        e.delivered_at_ms.map_or("-".into(), rfc3339),
        e.attempts,
        next_attempt(e).map_or("-".into(), rfc3339),
        opt(&e.last_error),
    );
    for (k, v) in &e.webhook.params {
        // Debug quoting shows newlines and quotes in caller text unambiguously.
        out.push_str(&format!("  {k:?} = {v:?}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewEvent;
    use crate::twilio::Role;

    fn sample() -> Event {
        Event {
            id: 42,
            webhook: NewEvent {
                received_at_ms: 1_795_624_330_000,
                role: Role::Fallback,
                method: "POST".into(),
                url: "https://f.example/sms".into(),
                path: "/sms".into(),
                params: vec![("Body".into(), "line1\nline2 \"q\"".into())],
                error_code: Some("11200".into()),
                error_url: None,
                idempotency_key: "SM1:/sms".into(),
                conversation: "SM1".into(),
                account_sid: None,
            },
            delivered_at_ms: None,
            attempts: 2,
            next_attempt_at_ms: 1_795_624_331_000,
            last_error: Some("503".into()),
        }
    }

    #[test]
    fn stats_say_how_old_the_backlog_is() {
        let s = Stats {
            total: 5,
            undelivered: 2,
            delivered: 3,
            oldest_undelivered_ms: Some(1000),
        };
        let text = stats_text(&s, 601_000);
        assert!(text.contains("undelivered  2"), "{text}");
        assert!(
            text.contains("1970-01-01T00:00:01.000Z (10m ago)"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&stats_json(&s, 601_000)).unwrap();
        assert_eq!(v["oldest_undelivered_age_seconds"], 600.0);
        assert!(stats_text(&Stats::default(), 0).contains("oldest undelivered  -"));
    }

    #[test]
    fn list_and_show_keep_caller_text_on_its_lines() {
        let e = sample();
        let list = list_text(std::slice::from_ref(&e));
        assert_eq!(list.lines().count(), 2);
        assert!(
            list.contains("retrying(2)") && list.contains("SM1:/sms"),
            "{list}"
        );
        let show = show_text(&e);
        assert!(show.contains(r#""Body" = "line1\nline2 \"q\"""#), "{show}");
        assert!(show.contains("error code       11200"));
        // A retry is scheduled after a failed attempt; an event never tried has none.
        assert!(
            show.contains("next attempt     2026-11-25T16:32:11.000Z"),
            "{show}"
        );
        let unsent = Event {
            attempts: 0,
            ..sample()
        };
        let show = show_text(&unsent);
        assert!(show.contains("state            unsent\n"), "{show}");
        assert!(show.contains("next attempt     -\n"), "{show}");
        assert!(list_text(&[unsent]).contains("unsent"));
        let v: serde_json::Value = serde_json::from_str(list_json(&[e]).trim()).unwrap();
        assert_eq!(v["params"][0][1], "line1\nline2 \"q\"");
        assert_eq!(v["received_at"], "2026-11-25T16:32:10.000Z");
    }
}
