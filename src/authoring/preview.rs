//! What `serve` would answer to one webhook, worked out without a server or a signature: the path
//! resolved as links are resolved, the parameters ordered as `serve` orders them, and the answer from
//! [`Templates::answer`], the same call the request handler makes. Pure: the caller loads the
//! templates and reads any parameter file. `render` and `test` are built on it.

use std::sync::Arc;

use crate::templates::lint::links::{self, Target};
use crate::templates::{valid_name, AnswerError, RenderError, Templates};
use crate::webhook::{parse_form, Params};

/// One webhook to answer: a template name and the parameters it sees.
#[derive(Debug, Clone)]
pub struct Request {
    /// The template name the path leads to.
    pub name: String,
    /// Body parameters first, then the query's, as `serve` hands them to a template.
    pub params: Params,
}

impl Request {
    /// The request for `link` followed from the template `from` (`""` for a path typed by a
    /// person: `/voice`, `voice`, `menu?lang=en`), resolved as the lint resolves links and as Twilio
    /// resolves a relative URL. The link's query parameters come after `body`'s and `bodySHA256` is
    /// left out, as `serve` does; a `#fragment` (connection overrides) is not sent.
    pub fn new(from: &str, link: &str, body: &Params) -> Result<Request, String> {
        let link = link.split('#').next().unwrap_or("");
        let query = link.split_once('?').map_or("", |(_, q)| q);
        let name = match links::resolve(from, link) {
            Target::Template(name) if valid_name(&name) && !reserved(&name) => name,
            Target::Template(_) => {
                return Err(format!(
                    "{link:?} is not a template path (letters, digits, `-`, `_`, `/`; not /status, \
                     /healthz, /readyz or /metrics)"
                ))
            }
            Target::Outside => {
                return Err(format!(
                    "{link:?} leads outside this server (an absolute URL); it cannot be followed offline"
                ))
            }
        };
        let query = parse_form(query.as_bytes())
            .map_err(|_| format!("{link:?}: the query is not UTF-8"))?;
        let mut params = body.clone();
        for (k, v) in query.iter().filter(|(k, _)| *k != "bodySHA256") {
            params.push(k, v);
        }
        Ok(Request { name, params })
    }
}

/// Paths `serve` answers itself, never from a template.
fn reserved(name: &str) -> bool {
    matches!(name, "healthz" | "readyz" | "metrics" | "status") || name.starts_with("status/")
}

/// What `serve` answers, in HTTP terms.
#[derive(Debug)]
pub struct Outcome {
    /// 200 with a TwiML document, 404 without a template, 503 when nothing could render.
    pub status: u16,
    /// The TwiML document on a 200.
    pub twiml: Option<String>,
    /// Which template answered (`primary`, `fallback`, or the fallback set's `voice`/`sms`).
    pub served_by: Option<&'static str>,
    /// The render error that sent the answer to the fallback set, or made it a 503.
    pub error: Option<RenderError>,
}

impl Outcome {
    /// One line for people: who answered and, when a template failed, why.
    pub fn describe(&self, name: &str) -> String {
        let who = |by: &str| match by {
            "primary" => format!("the primary set's {name} template"),
            "fallback" => format!("the fallback set's {name} template"),
            default => {
                format!("the fallback set's {default} template (its default for the channel)")
            }
        };
        match (self.status, self.served_by, &self.error) {
            (200, Some(by), None) => format!("200: answered by {}", who(by)),
            (200, Some(by), Some(e)) => format!(
                "200: the {name} template failed ({e}); answered by {}",
                who(by)
            ),
            (404, _, _) => format!("404: no template for {name:?}"),
            (status, _, Some(e)) => format!("{status}: no template could answer {name:?}: {e}"),
            (status, _, None) => format!("{status}"),
        }
    }
}

/// Answers `request` from `templates`, as the request handler does.
pub fn answer(templates: &Templates, request: &Request) -> Outcome {
    match templates.answer(&request.name, Arc::new(request.params.clone())) {
        Ok(answer) => Outcome {
            status: 200,
            served_by: Some(answer.served_by.label()),
            twiml: Some(answer.twiml),
            error: answer.degraded_from,
        },
        Err(AnswerError::NotFound) => Outcome {
            status: 404,
            twiml: None,
            served_by: None,
            error: None,
        },
        Err(AnswerError::Failed(e)) => Outcome {
            status: 503,
            twiml: None,
            served_by: None,
            error: Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(list: &[(&str, &str)]) -> Params {
        list.iter().copied().collect()
    }

    #[test]
    fn paths_route_as_serve_routes_them_and_the_query_comes_last() {
        let none = Params::new();
        let r = Request::new(
            "",
            "menu/?Digits=1&bodySHA256=x#ct=1",
            &body(&[("Digits", "2")]),
        )
        .unwrap();
        assert_eq!(r.name, "menu");
        assert_eq!(r.params, body(&[("Digits", "2"), ("Digits", "1")]));
        assert_eq!(Request::new("", "/a/b", &none).unwrap().name, "a/b");
        assert_eq!(Request::new("a/b", "c", &none).unwrap().name, "a/c");
        assert_eq!(Request::new("a/b", "/c", &none).unwrap().name, "c");
        for bad in [
            "/status",
            "/status/x",
            "/healthz",
            "/a b",
            "",
            "https://x.example/voice",
        ] {
            assert!(Request::new("", bad, &none).is_err(), "{bad}");
        }
    }
}
