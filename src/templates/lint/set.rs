//! A whole template set judged at once: every path of every template against the schema of its
//! channel, the channel of each template, and where its links lead. Pure: sources come in as text.
//!
//! A template's channel comes, in this order, from a declaration on its first line
//! (`{# channel: messaging #}`), the `voice` / `sms` / `sms/...` naming convention, its content
//! (voice-only or messaging-only verbs), and the templates it links with. A template that still
//! fits both (only `<Redirect>`, or nothing) is judged against both and must pass in one of them.

use std::collections::{BTreeMap, BTreeSet};

use super::links::{self, Target};
use super::paths::{self, Path};
use crate::templates::files::line_col;
use crate::twilio::document::{self, Link};
use crate::twilio::schema::SCHEMA;
use crate::twilio::{Channel, EXPRESSION_MARK};

/// One problem, in a template's source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The template's name.
    pub template: String,
    /// Byte offset into its source.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// What [`lint_set`] found.
#[derive(Debug, Default)]
pub struct SetReport {
    /// Problems, sorted by template and position, no duplicates.
    pub findings: Vec<Finding>,
    /// Each template's channels (two when it fits both and nothing tells).
    pub channels: BTreeMap<String, Vec<Channel>>,
}

const BOTH: [Channel; 2] = [Channel::Voice, Channel::Messaging];

struct Template<'a> {
    name: &'a str,
    paths: Vec<Path>,
    /// Fixed by a declaration, the naming convention or content.
    own: Option<Channel>,
    /// False when the template cannot be judged further (unparsable, mixed channels).
    judged: bool,
    /// Links found when reading the template under each channel it may have.
    links: Vec<(usize, Link)>,
}

/// Judges the templates `sources` (name, text) of one set.
// Long on purpose: the set-wide rules share the templates' channel map as it is built up.
pub fn lint_set(sources: &[(&str, &str)]) -> SetReport {
    let mut findings = BTreeSet::new();
    let mut add = |template: &str, offset: usize, message: String| {
        findings.insert(Finding {
            template: template.to_string(),
            offset,
            message,
        });
    };
    let templates: Vec<Template<'_>> = sources
        .iter()
        .map(|(name, text)| read(name, text, &mut add))
        .collect();
    let names: BTreeSet<&str> = templates.iter().map(|t| t.name).collect();

    // Channels: own first, then spread along links (both ways) to templates that fit both.
    let mut channels: BTreeMap<&str, BTreeSet<Channel>> = templates
        .iter()
        .map(|t| (t.name, t.own.into_iter().collect()))
        .collect();
    let edges: Vec<(&str, String)> = templates
        .iter()
        .flat_map(|t| {
            t.links
                .iter()
                .filter_map(move |(_, l)| match links::resolve(t.name, &l.target) {
                    Target::Template(n) => Some((t.name, n)),
                    Target::Outside => None,
                })
        })
        .collect();
    loop {
        let mut changed = false;
        for (from, to) in &edges {
            let Some(to) = names.get(to.as_str()).copied() else {
                continue;
            };
            for (a, b) in [(*from, to), (to, *from)] {
                let own_b = templates.iter().any(|t| t.name == b && t.own.is_some());
                if own_b {
                    continue;
                }
                let add: Vec<Channel> = channels[a].iter().copied().collect();
                let set = channels.get_mut(b).expect("every name has an entry");
                for c in add {
                    changed |= set.insert(c);
                }
            }
        }
        if !changed {
            break;
        }
    }

    let owns: BTreeMap<&str, Option<Channel>> = templates.iter().map(|t| (t.name, t.own)).collect();
    let mut report_channels = BTreeMap::new();
    for t in &templates {
        let mut chosen: Vec<Channel> = channels[t.name].iter().copied().collect();
        if chosen.is_empty() {
            chosen = BOTH.to_vec();
        }
        report_channels.insert(t.name.to_string(), chosen.clone());
        if !t.judged {
            continue;
        }
        judge(t, &chosen, &mut add);
        for (offset, link) in &t.links {
            let Target::Template(target) = links::resolve(t.name, &link.target) else {
                continue;
            };
            let Some(target_channels) = channels.get(target.as_str()) else {
                // `/status` is the server's own status-callback route (204, journaled): a
                // `<Message action>` pointed at it gets the status and no more TwiML, which ends
                // the messaging response as it should.
                if chosen == [Channel::Messaging]
                    && (target == "status" || target.starts_with("status/"))
                {
                    continue;
                }
                add(
                    t.name,
                    *offset,
                    format!(
                        "{} leads to /{target}, which has no template in this set",
                        link.place
                    ),
                );
                continue;
            };
            for c in &chosen {
                if let Some(tc) = owns[target.as_str()] {
                    if tc != *c && !target_channels.contains(c) {
                        add(
                            t.name,
                            *offset,
                            format!(
                                "{} leads to /{target}, a {} template; {} never leads into {} \
                                 TwiML",
                                link.place,
                                tc.as_str(),
                                c.as_str(),
                                tc.as_str()
                            ),
                        );
                    }
                }
            }
        }
    }
    SetReport {
        findings: findings.into_iter().collect(),
        channels: report_channels,
    }
}

/// Lists paths, checks each is well-formed TwiML, and decides what the template's own content says.
// Long on purpose: one pass over a template's paths, each finding added where it is seen.
fn read<'a>(name: &'a str, text: &str, add: &mut impl FnMut(&str, usize, String)) -> Template<'a> {
    let mut t = Template {
        name,
        paths: Vec::new(),
        own: None,
        judged: false,
        links: Vec::new(),
    };
    let declared = match declaration(text) {
        Ok(d) => d,
        Err(message) => {
            add(name, 0, message);
            return t;
        }
    };
    // Renders are trimmed, but the file itself must be XML whose declaration comes first.
    let lead = text.len() - text.trim_start().len();
    if lead > 0 && text[lead..].starts_with("<?xml") {
        add(
            name,
            0,
            "whitespace before the XML declaration; it must be the very first thing in the file"
                .to_string(),
        );
        return t;
    }
    t.paths = match paths::paths(text) {
        Ok(p) => p,
        Err(e) => {
            add(name, e.offset, e.message);
            return t;
        }
    };
    let mut voice_only = None;
    let mut messaging_only = None;
    let mut broken = false;
    for path in &t.paths {
        let report = document::check(&path.doc, None);
        for p in &report.problems {
            let message = if path.doc[p.offset.min(path.doc.len())..].starts_with(EXPRESSION_MARK) {
                "an expression may only stand in text or in an attribute value (its value is \
                 escaped, so it can never make markup)"
                    .to_string()
            } else if let Some(opened) = p.opened {
                let (line, col) = line_col(text, path.source_offset(opened));
                format!("{} (it was opened at {line}:{col})", p.message)
            } else {
                p.message.clone()
            };
            add(name, path.source_offset(p.offset), message);
            broken = true;
        }
        for (verb, offset) in &report.verbs {
            let v = SCHEMA.has_tag(Channel::Voice, verb);
            let m = SCHEMA.has_tag(Channel::Messaging, verb);
            let at = (verb.clone(), path.source_offset(*offset));
            if v && !m {
                voice_only.get_or_insert(at);
            } else if m && !v {
                messaging_only.get_or_insert(at);
            }
        }
        if path.doc.len() > document::MAX_DOCUMENT_BYTES {
            add(
                name,
                0,
                format!(
                    "renders to more than {} bytes, over Twilio's 64 kB limit (error 11750)",
                    document::MAX_DOCUMENT_BYTES
                ),
            );
            broken = true;
        }
    }
    if broken {
        return t;
    }
    let convention = match name {
        "voice" => Some(Channel::Voice),
        n if n == "sms" || n.starts_with("sms/") => Some(Channel::Messaging),
        _ => None,
    };
    let content = match (&voice_only, &messaging_only) {
        (Some((v, _)), Some((m, at))) if declared.is_none() && convention.is_none() => {
            add(
                name,
                *at,
                format!(
                    "mixes voice TwiML (<{v}>) and messaging TwiML (<{m}>); a template answers \
                     either a call or a message"
                ),
            );
            return t;
        }
        (Some(_), None) => Some(Channel::Voice),
        (None, Some(_)) => Some(Channel::Messaging),
        _ => None,
    };
    t.own = declared.or(convention).or(content);
    t.judged = true;
    let channels: Vec<Channel> = t.own.map_or(BOTH.to_vec(), |c| vec![c]);
    let mut seen = BTreeSet::new();
    for path in &t.paths {
        for c in &channels {
            for link in document::check(&path.doc, Some(*c)).links {
                let offset = path.source_offset(link.offset);
                if seen.insert((offset, link.target.clone())) {
                    t.links.push((offset, link));
                }
            }
        }
    }
    t
}

/// Reports the schema problems of every path under the template's channels; a template that fits
/// both only fails with problems it has in each.
fn judge(t: &Template<'_>, channels: &[Channel], add: &mut impl FnMut(&str, usize, String)) {
    let mut per_channel: Vec<BTreeMap<usize, String>> = Vec::new();
    for c in channels {
        let mut found = BTreeMap::new();
        for path in &t.paths {
            for p in document::check(&path.doc, Some(*c)).problems {
                found
                    .entry(path.source_offset(p.offset))
                    .or_insert(p.message);
            }
        }
        per_channel.push(found);
    }
    let Some((first, rest)) = per_channel.split_first() else {
        return;
    };
    if rest.iter().any(BTreeMap::is_empty) {
        return;
    }
    for (offset, message) in first {
        add(t.name, *offset, message.clone());
    }
}

/// The channel declared by `{# channel: voice #}` or `{# channel: messaging #}` opening the file.
fn declaration(text: &str) -> Result<Option<Channel>, String> {
    let Some(rest) = text.strip_prefix("{#") else {
        return Ok(None);
    };
    let Some(end) = rest.find("#}") else {
        return Ok(None);
    };
    let inner = rest[..end].trim_matches(['-', '+']).trim();
    let Some(value) = inner.strip_prefix("channel:") else {
        return Ok(None);
    };
    match value.trim() {
        "voice" => Ok(Some(Channel::Voice)),
        "messaging" => Ok(Some(Channel::Messaging)),
        other => Err(format!(
            "unknown channel {other:?} in the declaration; write `{{# channel: voice #}}` or \
             `{{# channel: messaging #}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOICE: (&str, &str) = ("voice", "<Response><Say>Hi {{ From }}</Say></Response>");
    const SMS: (&str, &str) = ("sms", "<Response><Message>{{ Body }}</Message></Response>");

    fn errors(extra: &[(&str, &str)]) -> Vec<String> {
        let mut all = vec![VOICE, SMS];
        all.extend_from_slice(extra);
        lint_set(&all)
            .findings
            .into_iter()
            .map(|f| format!("{}@{}: {}", f.template, f.offset, f.message))
            .collect()
    }

    #[test]
    fn channel_from_content_declaration_and_links() {
        let r = lint_set(&[
            VOICE,
            SMS,
            ("reply", "<Response><Message>ok</Message></Response>"),
            ("hop", "<Response><Redirect>sms</Redirect></Response>"),
            (
                "any",
                "<Response><Redirect>https://x.example/</Redirect></Response>",
            ),
            ("d", "{# channel: messaging #}\n<Response/>"),
        ]);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.channels["reply"], [Channel::Messaging]);
        assert_eq!(r.channels["hop"], [Channel::Messaging]);
        assert_eq!(r.channels["any"], BOTH);
        assert_eq!(r.channels["d"], [Channel::Messaging]);
    }

    #[test]
    fn mixed_and_crossing_channels_are_errors() {
        let e = errors(&[("m", "<Response><Say>a</Say><Message>b</Message></Response>")]);
        assert!(
            e[0].contains("mixes voice TwiML (<Say>) and messaging TwiML (<Message>)"),
            "{e:?}"
        );
        let e = errors(&[("g", "<Response><Gather action=\"sms\"/></Response>")]);
        assert!(
            e[0].contains("leads to /sms, a messaging template"),
            "{e:?}"
        );
        let e = errors(&[(
            "x",
            "<Response><Redirect>sms/help</Redirect><Say>x</Say></Response>",
        )]);
        assert!(e.iter().any(|e| e.contains("no template")), "{e:?}");
    }

    #[test]
    fn a_message_action_is_a_link_and_never_leads_into_voice() {
        let e = errors(&[
            (
                "sms/reply",
                "<Response><Message action=\"/hangup\">Bye</Message></Response>",
            ),
            ("hangup", "<Response><Hangup/></Response>"),
        ]);
        assert!(
            e.iter().any(|e| e.contains(
                "<Message action> leads to /hangup, a voice template; messaging never leads into \
                 voice TwiML"
            )),
            "{e:?}"
        );
        let e = errors(&[(
            "sms/reply",
            "<Response><Message action=\"nowhere\">Bye</Message></Response>",
        )]);
        assert!(
            e[0].contains("leads to /sms/nowhere, which has no template"),
            "{e:?}"
        );
        // The server answers /status itself: a delivery receipt, no TwiML needed.
        let e = errors(&[(
            "sms/reply",
            "<Response><Message action=\"/status\">Bye</Message></Response>",
        )]);
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn dangling_links_and_split_markup() {
        let e = errors(&[(
            "r",
            "<Response><Redirect>nowhere?from={{ From }}</Redirect></Response>",
        )]);
        assert!(e[0].contains("leads to /nowhere"), "{e:?}");
        let e = errors(&[(
            "b",
            "<Response>{% if Digits %}<Gather numDigits=\"1\">{% else %}<Gather numDigits=\"4\">{% endif %}<Say>x</Say></Gather></Response>",
        )]);
        assert!(e.is_empty(), "{e:?}");
        let e = errors(&[(
            "u",
            "<Response>{% if Digits %}<Say>{% endif %}x</Say></Response>",
        )]);
        assert!(e.iter().any(|e| e.contains("not well-formed")), "{e:?}");
        let e = errors(&[("n", "<Response><{{ verb }}>hi</Say></Response>")]);
        assert!(
            e[0].starts_with("n@11: an expression may only stand"),
            "{e:?}"
        );
    }
}
