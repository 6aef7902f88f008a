//! Where a link in a template leads: a relative URL resolved against the template's own URL the way
//! Twilio resolves it, down to the name of a template in the same set. Pure.

use crate::twilio::EXPRESSION_MARK;

/// Where a link leads, as far as the check can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A template name in the same set.
    Template(String),
    /// Elsewhere (an absolute URL) or decided at render time (an expression in the path).
    Outside,
}

/// Resolves `target` (entities decoded; [`EXPRESSION_MARK`] for expressions) from template `from`.
/// An expression in the query or fragment leaves the fixed path to check.
pub fn resolve(from: &str, target: &str) -> Target {
    let target = target.trim();
    let path_end = target.find(['?', '#']).unwrap_or(target.len());
    let path = &target[..path_end];
    let scheme = path.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if scheme || path.starts_with("//") || path.contains(EXPRESSION_MARK) {
        return Target::Outside;
    }
    if target.is_empty() {
        return Target::Outside;
    }
    if path.is_empty() {
        return Target::Template(from.to_string());
    }
    let mut segments: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        let mut base: Vec<&str> = from.split('/').collect();
        base.pop();
        base
    };
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    Target::Template(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Target {
        Target::Template(name.into())
    }

    #[test]
    fn resolves_links_like_twilio() {
        assert_eq!(resolve("voice", "menu"), t("menu"));
        assert_eq!(resolve("a/b", "c?x=1"), t("a/c"));
        assert_eq!(resolve("a/b", "/c#ct=1"), t("c"));
        assert_eq!(resolve("a/b", "../c"), t("c"));
        assert_eq!(resolve("a/b", "?x=1"), t("a/b"));
        assert_eq!(resolve("a/b", "https://x/y"), Target::Outside);
        assert_eq!(resolve("a/b", "//x/y"), Target::Outside);
        assert_eq!(resolve("a/b", ""), Target::Outside);
    }

    #[test]
    fn an_expression_in_the_query_keeps_the_path_checked() {
        let m = EXPRESSION_MARK;
        assert_eq!(resolve("voice", &format!("nowhere?from={m}")), t("nowhere"));
        assert_eq!(resolve("voice", &format!("/{m}/x")), Target::Outside);
    }
}
