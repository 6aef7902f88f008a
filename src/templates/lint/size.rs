//! Loops that can write more than Twilio's 64 kB with the longest values a request can carry: a
//! warning, not an error (such a template loads, and an answer over the limit is degraded at run
//! time to the fallback set). Pure.
//!
//! One pass of a loop is bounded by its text and, for each value it writes, the value's longest
//! escaped form: a `[vars]` value as configured, a number from `| e164` 16 characters, any request
//! value [`MAX_VALUE_CHARS`] characters of up to [`MAX_ESCAPED_BYTES`] bytes each. The passes are
//! bounded when the loop says so (`range(5)`, a literal list, a slice `[:5]`) or runs over one value
//! Twilio sends once (`Body | each`); a list sent as `Name[]` has no bound a template can see.

use std::collections::BTreeMap;

use super::paths::{self, Unjudgeable};
use crate::templates::context::TWILIO_PARAMS;
use crate::twilio::document::MAX_DOCUMENT_BYTES;

/// The longest value Twilio documents for a request parameter: a message `Body`, "up to 1,600
/// characters" (https://www.twilio.com/docs/messaging/api/message-resource, `Body`). No other
/// parameter documents a cap, so every request value is taken to be as long.
pub const MAX_VALUE_CHARS: usize = 1600;

/// Bytes one character can become when escaped: `"` is `&quot;`, `'` is `&apos;`.
pub const MAX_ESCAPED_BYTES: usize = 6;

/// A loop that can go over the limit: where its `{% for %}` is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversize {
    /// Offset of the `{% for %}` in the source.
    pub offset: usize,
    /// What can happen, and how to bound it.
    pub message: String,
}

/// The loops of `source` that can write more than [`MAX_DOCUMENT_BYTES`]; `vars` are the config's
/// `[vars]`, whose lengths are known.
pub fn oversize_loops(
    source: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<Oversize>, Unjudgeable> {
    let mut found = Vec::new();
    for l in paths::loops(source)? {
        let statement = paths::tag_body(source, l.offset);
        let per_pass = l
            .passes
            .iter()
            .map(|(text, exprs)| {
                text + exprs
                    .iter()
                    .map(|at| value_bytes(paths::tag_body(source, *at), vars))
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0);
        if per_pass == 0 {
            continue;
        }
        let shown = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        // The passes that fit with the longest values.
        let fit = MAX_DOCUMENT_BYTES / per_pass;
        match passes(statement) {
            Passes::Bounded(n) if n.saturating_mul(per_pass) <= MAX_DOCUMENT_BYTES => {}
            Passes::Bounded(n) => found.push(Oversize {
                offset: l.offset,
                message: format!(
                    "warning: the loop `{{% {shown} %}}` can write {n} × {per_pass} = {} bytes with \
                     the longest values a request carries ({MAX_VALUE_CHARS} characters, escaped), \
                     over Twilio's {MAX_DOCUMENT_BYTES}-byte limit (error 11750; the answer would \
                     come from the fallback set): run it at most {fit} times, or write less per pass",
                    n.saturating_mul(per_pass)
                ),
            }),
            Passes::PerValue(list) => found.push(Oversize {
                offset: l.offset,
                message: format!(
                    "warning: the loop `{{% {shown} %}}` runs once per value of `{list}` a request \
                     carries, with no bound: {} values (with the longest a request carries, \
                     {MAX_VALUE_CHARS} characters, escaped: up to {per_pass} bytes a pass) go over \
                     Twilio's {MAX_DOCUMENT_BYTES}-byte limit (error 11750; the answer would come \
                     from the fallback set); bound it: `{{% {} %}}`",
                    fit + 1,
                    bounded(&shown, fit),
                ),
            }),
        }
    }
    Ok(found)
}

/// `for X in ITERABLE [if …]` with the iterable sliced to its first `n` values.
fn bounded(statement: &str, n: usize) -> String {
    let Some((head, rest)) = statement.split_once(" in ") else {
        return statement.to_string();
    };
    let (iterable, tail) = match rest.find(" if ") {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let iterable = iterable.trim();
    let sliced = if iterable.chars().all(|c| c.is_alphanumeric() || c == '_') {
        format!("{iterable}[:{n}]")
    } else {
        format!("({iterable})[:{n}]")
    };
    format!("{head} in {sliced}{tail}")
}

/// The longest escaped bytes the expression `expr` can write.
fn value_bytes(expr: &str, vars: &BTreeMap<String, String>) -> usize {
    let name_end = expr
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, rest) = expr.split_at(name_end);
    if rest.trim_start().starts_with('|') && rest.contains("e164") {
        return 16;
    }
    if rest.trim().is_empty() {
        if let Some(value) = vars.get(name) {
            return crate::templates::escape::escape(value).len();
        }
    }
    if let Some(quoted) = expr.strip_prefix('"').or_else(|| expr.strip_prefix('\'')) {
        if rest.is_empty() {
            return crate::templates::escape::escape(&quoted[..quoted.len().saturating_sub(1)])
                .len();
        }
    }
    MAX_VALUE_CHARS * MAX_ESCAPED_BYTES
}

/// How many times a loop can run.
#[derive(Debug, PartialEq, Eq)]
enum Passes {
    /// At most this many.
    Bounded(usize),
    /// Once per value of this list, as many as a request carries.
    PerValue(String),
}

/// The passes of `for NAME in ITERABLE [if …]`.
fn passes(statement: &str) -> Passes {
    let iterable = statement
        .split_once(" in ")
        .map_or("", |(_, it)| it)
        .split(" if ")
        .next()
        .unwrap_or("")
        .split(" recursive")
        .next()
        .unwrap_or("")
        .trim();
    let unbounded = || {
        let name: String = iterable
            .trim_start_matches('(')
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        Passes::PerValue(if name.is_empty() {
            iterable.to_string()
        } else {
            name
        })
    };
    // A slice with a literal end bounds whatever it slices.
    if let Some(end) = iterable
        .strip_suffix(']')
        .and_then(|s| s.rsplit_once('['))
        .and_then(|(_, slice)| slice.split_once(':'))
        .and_then(|(start, end)| {
            let start: usize = start.trim().parse().unwrap_or(0);
            end.trim()
                .parse::<usize>()
                .ok()
                .map(|e| e.saturating_sub(start))
        })
    {
        return Passes::Bounded(end);
    }
    if let Some(args) = iterable
        .strip_prefix("range(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let n: Vec<i64> = args
            .split(',')
            .map_while(|a| a.trim().parse().ok())
            .collect();
        return match n.as_slice() {
            [stop] => Passes::Bounded((*stop).max(0) as usize),
            [start, stop] => Passes::Bounded((stop - start).max(0) as usize),
            [start, stop, step] if *step > 0 => {
                Passes::Bounded(((stop - start).max(0) as usize).div_ceil(*step as usize))
            }
            _ => unbounded(),
        };
    }
    if let Some(items) = iterable.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        if !items.contains(['[', '(', '{']) {
            return Passes::Bounded(items.split(',').filter(|i| !i.trim().is_empty()).count());
        }
    }
    // One value Twilio sends once (`Body`, `Body | each`) is one pass.
    let name = iterable.split('|').next().unwrap_or("").trim();
    let filters: Vec<&str> = iterable.split('|').skip(1).map(str::trim).collect();
    if TWILIO_PARAMS.contains(&name) && filters.iter().all(|f| *f == "each") {
        return Passes::Bounded(1);
    }
    unbounded()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(source: &str) -> Vec<(usize, String)> {
        let vars = BTreeMap::from([("company".to_string(), "Example".to_string())]);
        oversize_loops(source, &vars)
            .unwrap()
            .into_iter()
            .map(|o| (o.offset, o.message))
            .collect()
    }

    #[test]
    fn counts_the_passes_a_loop_says() {
        assert_eq!(passes("for i in range(50)"), Passes::Bounded(50));
        assert_eq!(passes("for i in range(2, 12, 5)"), Passes::Bounded(2));
        assert_eq!(passes("for x in [1, 2, 3]"), Passes::Bounded(3));
        assert_eq!(passes("for d in (Dest | each)[:5]"), Passes::Bounded(5));
        assert_eq!(passes("for d in Dest[1:4] if d"), Passes::Bounded(3));
        assert_eq!(passes("for b in Body | each"), Passes::Bounded(1));
        assert_eq!(
            passes("for d in Dest | each"),
            Passes::PerValue("Dest".into())
        );
        assert_eq!(passes("for d in Dest"), Passes::PerValue("Dest".into()));
    }

    #[test]
    fn a_loop_that_can_pass_64_kb_is_named_with_its_place() {
        let src = "<Response><Say>{% for i in range(50) %}{{ Body }} {% endfor %}</Say></Response>";
        let w = warnings(src);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, src.find("{% for").unwrap());
        assert!(
            w[0].1
                .contains("`{% for i in range(50) %}` can write 50 × 9601 = 480050 bytes"),
            "{w:?}"
        );
        // Small enough: six passes of the longest Body fit.
        assert!(warnings(
            "<Response>{% for i in range(6) %}<Say>{{ Body }}</Say>{% endfor %}</Response>"
        )
        .is_empty());
        // [vars] are as long as configured, e164 numbers short.
        assert!(warnings(
            "<Response>{% for i in range(400) %}<Say>{{ company }} {{ From | e164 }}</Say>{% endfor %}</Response>"
        )
        .is_empty());
    }

    #[test]
    fn a_loop_per_value_of_a_list_has_no_bound_until_it_is_sliced() {
        let src = "<Response><Dial>{% for d in Dest | each %}<Number>{{ d }}</Number>{% endfor %}</Dial></Response>";
        let w = warnings(src);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].1.contains(
                "runs once per value of `Dest` a request carries, with no bound: 7 values"
            ),
            "{w:?}"
        );
        assert!(warnings(
            "<Response><Dial>{% for d in (Dest | each)[:5] %}<Number>{{ d }}</Number>{% endfor %}</Dial></Response>"
        )
        .is_empty());
        assert!(warnings(
            "<Response><Message>{% for b in Body | each %}{{ b }}{% endfor %}</Message></Response>"
        )
        .is_empty());
    }
}
