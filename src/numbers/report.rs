//! How audits and plans are printed: a table (colours only when asked, i.e. on a terminal), one
//! line per number otherwise, JSON for scripts. Pure: returns strings.

use serde::Serialize;

use super::audit::{summary, ChannelAudit, NumberAudit};
use super::plan::Plan;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

fn channel_cell(c: &ChannelAudit) -> String {
    let verdict = if c.problems.is_empty() { "ok" } else { "FAIL" };
    format!("{verdict} ({})", c.source.label())
}

fn problems(a: &NumberAudit) -> String {
    let mut out = Vec::new();
    for (name, c) in [("voice", &a.voice), ("sms", &a.sms)] {
        for p in &c.problems {
            out.push(format!("{name}: {}", p.detail));
        }
    }
    out.join("; ")
}

/// The audit for people. `table`: aligned columns under a header (a terminal); otherwise one
/// plain line per number. `colour`: ANSI colours on the verdicts.
pub fn audit_text(audits: &[NumberAudit], table: bool, colour: bool) -> String {
    let paint = |ok: bool, text: String| {
        if colour {
            format!("{}{text}{RESET}", if ok { GREEN } else { RED })
        } else {
            text
        }
    };
    let mut out = String::new();
    if table {
        let rows: Vec<[String; 5]> = audits
            .iter()
            .map(|a| {
                [
                    a.phone_number.clone(),
                    a.friendly_name.clone().unwrap_or_default(),
                    channel_cell(&a.voice),
                    channel_cell(&a.sms),
                    problems(a),
                ]
            })
            .collect();
        let head = ["NUMBER", "NAME", "VOICE", "SMS", "PROBLEMS"];
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
        out.push_str(&format!(
            "{}  {}  {}  {}  {}\n",
            pad(head[0], width[0]),
            pad(head[1], width[1]),
            pad(head[2], width[2]),
            pad(head[3], width[3]),
            head[4]
        ));
        for (r, a) in rows.iter().zip(audits) {
            let line = format!(
                "{}  {}  {}  {}  {}",
                pad(&r[0], width[0]),
                pad(&r[1], width[1]),
                paint(a.voice.problems.is_empty(), pad(&r[2], width[2])),
                paint(a.sms.problems.is_empty(), pad(&r[3], width[3])),
                r[4]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    } else {
        for a in audits {
            let verdict = if a.ok() { "ok" } else { "FAIL" };
            out.push_str(&format!(
                "{} {} voice={} sms={}",
                a.phone_number,
                paint(a.ok(), verdict.to_string()),
                a.voice.source.short(),
                a.sms.source.short(),
            ));
            let p = problems(a);
            if !p.is_empty() {
                out.push_str(&format!(" | {p}"));
            }
            out.push('\n');
        }
    }
    out.push_str(&summary(audits));
    out.push('\n');
    out
}

/// The audit for scripts.
pub fn audit_json(audits: &[NumberAudit]) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        ok: bool,
        summary: String,
        numbers: &'a [NumberAudit],
    }
    let out = Out {
        ok: audits.iter().all(NumberAudit::ok),
        summary: summary(audits),
        numbers: audits,
    };
    serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
}

/// The plan for people: per resource, field by field, `old -> new`.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        out.push_str(&format!("{} {} ({})", c.kind.as_str(), c.label, c.sid));
        if c.kind != super::plan::Kind::Number {
            out.push_str(&format!(", for {}", c.serves.join(", ")));
        }
        out.push_str(":\n");
        let width = c.fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &c.fields {
            out.push_str(&format!(
                "  {:width$}  {} -> {}\n",
                f.name,
                f.old.as_deref().unwrap_or("(unset)"),
                f.new
            ));
        }
    }
    for s in &plan.skipped {
        out.push_str(&format!(
            "left alone: {} {}: {}\n",
            s.kind.as_str(),
            s.sid,
            s.reason
        ));
    }
    if !plan.trunked.is_empty() {
        out.push_str(&format!(
            "voice on a SIP trunk (no voice webhook to set): {}\n",
            plan.trunked.join(", ")
        ));
    }
    if plan.changes.is_empty() {
        out.push_str("No changes: the selected numbers are wired as intended.\n");
    } else {
        out.push_str(&format!(
            "Plan: {} field(s) to change on {} resource(s).\n",
            plan.field_count(),
            plan.changes.len()
        ));
    }
    out
}

/// The plan for scripts.
pub fn plan_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numbers::audit::{Handling, Kind, Problem, Source};

    fn row(phone: &str, problems: Vec<Problem>) -> NumberAudit {
        let channel = |source, problems| ChannelAudit {
            source,
            handling: Handling::default(),
            problems,
        };
        NumberAudit {
            sid: "PN1".into(),
            phone_number: phone.into(),
            friendly_name: Some("front desk".into()),
            voice: channel(Source::Number, problems),
            sms: channel(Source::Service("MG1".into()), Vec::new()),
        }
    }

    #[test]
    fn table_lines_and_colours() {
        let audits = [
            row("+15550000001", Vec::new()),
            row(
                "+15550000002",
                vec![Problem {
                    kind: Kind::NoFallbackUrl,
                    detail: "no fallback URL".into(),
                }],
            ),
        ];
        assert_eq!(
            audit_text(&audits, true, false),
            "NUMBER        NAME        VOICE          SMS               PROBLEMS\n\
             +15550000001  front desk  ok (number)    ok (Service MG1)\n\
             +15550000002  front desk  FAIL (number)  ok (Service MG1)  voice: no fallback URL\n\
             2 numbers: 1 ok, 1 without a fallback URL\n"
        );
        assert_eq!(
            audit_text(&audits, false, false).lines().nth(1),
            Some("+15550000002 FAIL voice=number sms=service:MG1 | voice: no fallback URL")
        );
        let coloured = audit_text(&audits, true, true);
        assert!(
            coloured.contains("\x1b[31mFAIL (number)\x1b[0m  "),
            "{coloured}"
        );
        assert!(!audit_text(&audits, false, false).contains('\x1b'));
        let json: serde_json::Value = serde_json::from_str(&audit_json(&audits)).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(
            json["numbers"][1]["voice"]["problems"][0]["kind"],
            "no_fallback_url"
        );
    }
}
