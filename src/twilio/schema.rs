//! The TwiML schema: which elements each channel allows, where they nest, their attributes and the
//! types of their values. Pure: `schema.json` (generated from Twilio's SDK builders, see
//! `tests/oracle/generate.sh`) is embedded at build time and read once.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::Channel;

/// The whole schema file; fields the engine does not use are ignored.
#[derive(Debug, Deserialize)]
pub struct Schema {
    /// Channel name (`voice`, `messaging`) -> its root element.
    pub channels: BTreeMap<String, ChannelSpec>,
    /// Element id (`voice:Gather`) -> what it allows.
    pub elements: BTreeMap<String, Element>,
}

/// One channel's entry.
#[derive(Debug, Deserialize)]
pub struct ChannelSpec {
    /// The id of the root element (`voice:VoiceResponse`).
    pub root: String,
}

/// One element: tag, children, text and attributes.
#[derive(Debug, Deserialize)]
pub struct Element {
    /// The XML tag.
    pub tag: String,
    /// Ids of the elements allowed directly inside.
    #[serde(default)]
    pub children: Vec<String>,
    /// `None` when no character data is allowed.
    pub text: Option<TextSpec>,
    /// Attribute name (case-sensitive) -> its value type.
    #[serde(default)]
    pub attributes: BTreeMap<String, ValueType>,
}

/// What the element's text must be.
#[derive(Debug, Deserialize)]
pub struct TextSpec {
    /// Its type.
    #[serde(flatten)]
    pub value: ValueType,
    /// Whether the SDK builder requires it.
    #[serde(default)]
    pub required: bool,
}

/// The type of an attribute value or element text.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ValueType {
    /// Any text.
    String {},
    /// A URL Twilio fetches TwiML from next.
    Link {},
    /// Any other URL: checked as a URL, not followed.
    Url {},
    /// `true` or `false`.
    Boolean {},
    /// A whole number within the bounds.
    Integer {
        /// Inclusive lower bound.
        min: Option<f64>,
        /// Inclusive upper bound.
        max: Option<f64>,
    },
    /// A decimal number within the bounds.
    Number {
        /// Inclusive lower bound.
        min: Option<f64>,
        /// Inclusive upper bound.
        max: Option<f64>,
    },
    /// Exactly one of the values.
    Enum {
        /// The allowed values.
        values: Vec<String>,
        /// Whether case is ignored.
        #[serde(default)]
        case_insensitive: bool,
    },
    /// One or more of the values, separated by spaces.
    EnumList {
        /// The allowed values.
        values: Vec<String>,
        /// Whether case is ignored.
        #[serde(default)]
        case_insensitive: bool,
    },
}

/// The schema compiled into the binary.
pub static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    serde_json::from_str(include_str!("schema.json")).expect("schema.json is valid (tested)")
});

impl Schema {
    /// The root element of `channel`.
    pub fn root(&self, channel: Channel) -> &Element {
        let id = &self.channels[channel.as_str()].root;
        &self.elements[id]
    }

    /// The child of `parent` whose tag is `tag`, with its id.
    pub fn child<'a>(&'a self, parent: &Element, tag: &str) -> Option<(&'a str, &'a Element)> {
        parent.children.iter().find_map(|id| {
            let (id, e) = self.elements.get_key_value(id)?;
            (e.tag == tag).then_some((id.as_str(), e))
        })
    }

    /// True when some element of `channel` has the tag `tag`.
    pub fn has_tag(&self, channel: Channel, tag: &str) -> bool {
        let prefix = format!("{}:", channel.as_str());
        self.elements
            .iter()
            .any(|(id, e)| id.starts_with(&prefix) && e.tag == tag)
    }

    /// Tags of the elements allowed inside `parent`, for messages.
    pub fn child_tags(&self, parent: &Element) -> Vec<&str> {
        let mut tags: Vec<&str> = parent
            .children
            .iter()
            .filter_map(|id| self.elements.get(id).map(|e| e.tag.as_str()))
            .collect();
        tags.dedup();
        tags
    }
}

impl ValueType {
    /// Why `value` (entities already decoded) is not of this type, or `None` when it is.
    pub fn problem(&self, value: &str) -> Option<String> {
        let v = value.trim();
        match self {
            ValueType::String {} | ValueType::Link {} => None,
            ValueType::Url {} => {
                if v.is_empty() {
                    Some("must be a URL, not empty".into())
                } else if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    Some("must be a URL; it holds spaces or control characters".into())
                } else {
                    None
                }
            }
            ValueType::Boolean {} => {
                (!matches!(v, "true" | "false")).then(|| "must be true or false".into())
            }
            ValueType::Integer { min, max } => {
                let Ok(n) = v.parse::<i64>() else {
                    return Some("must be a whole number".into());
                };
                range_problem(n as f64, *min, *max)
            }
            ValueType::Number { min, max } => match v.parse::<f64>() {
                Ok(n) if n.is_finite() => range_problem(n, *min, *max),
                _ => Some("must be a number".into()),
            },
            ValueType::Enum {
                values,
                case_insensitive,
            } => (!one_of(values, v, *case_insensitive))
                .then(|| format!("must be one of {}", values.join(", "))),
            ValueType::EnumList {
                values,
                case_insensitive,
            } => {
                let mut items = v.split_whitespace().peekable();
                if items.peek().is_none() {
                    return Some(format!("must list one or more of {}", values.join(", ")));
                }
                items
                    .find(|i| !one_of(values, i, *case_insensitive))
                    .map(|bad| {
                        format!(
                            "holds {bad:?}; each item must be one of {} (separated by spaces)",
                            values.join(", ")
                        )
                    })
            }
        }
    }

    /// True for a URL Twilio fetches TwiML from next.
    pub fn is_link(&self) -> bool {
        matches!(self, ValueType::Link {})
    }
}

fn one_of(values: &[String], v: &str, case_insensitive: bool) -> bool {
    values.iter().any(|allowed| {
        if case_insensitive {
            allowed.eq_ignore_ascii_case(v)
        } else {
            allowed == v
        }
    })
}

fn range_problem(n: f64, min: Option<f64>, max: Option<f64>) -> Option<String> {
    match (min, max) {
        (Some(lo), Some(hi)) if n < lo || n > hi => Some(format!("must be from {lo} to {hi}")),
        (Some(lo), None) if n < lo => Some(format!("must be at least {lo}")),
        (None, Some(hi)) if n > hi => Some(format!("must be at most {hi}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schema_loads_and_every_child_exists() {
        let s = &*SCHEMA;
        for channel in [Channel::Voice, Channel::Messaging] {
            assert_eq!(s.root(channel).tag, "Response");
        }
        for (id, e) in &s.elements {
            for child in &e.children {
                assert!(s.elements.contains_key(child), "{id} -> {child}");
            }
        }
    }

    #[test]
    fn judges_values_by_type() {
        let int = ValueType::Integer {
            min: Some(1.0),
            max: None,
        };
        assert_eq!(int.problem("3"), None);
        assert!(int.problem("abc").is_some());
        assert!(int.problem("0").is_some());
        let list = ValueType::EnumList {
            values: vec!["dtmf".into(), "speech".into()],
            case_insensitive: false,
        };
        assert_eq!(list.problem("dtmf speech"), None);
        assert!(list.problem("keypad").is_some());
        assert!(ValueType::Boolean {}.problem("yes").is_some());
        assert!(ValueType::Url {}.problem("a b").is_some());
    }
}
