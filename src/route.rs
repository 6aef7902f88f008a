//! Routing: which endpoint a method and path ask for. Pure.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when templates are loaded and not draining, else 503 |
//! | `GET /metrics` | Prometheus text exposition |
//! | `POST`/`GET /status[/...]` | signed status callback, 204 |
//! | `POST`/`GET /<name>` | signed webhook, template `<name>.xml` |

use http::Method;

use crate::templates::valid_name;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'p> {
    /// Liveness.
    Healthz,
    /// Readiness.
    Readyz,
    /// Metrics exposition.
    Metrics,
    /// A status callback.
    Status,
    /// A webhook answered by the named template (borrowed from the request's path: no copy).
    Template(&'p str),
    /// No such endpoint (404).
    NotFound,
    /// Known endpoint, wrong method (405 with this `Allow`).
    MethodNotAllowed(&'static str),
}

impl Route<'_> {
    /// A fixed, low-cardinality name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Status => "status",
            Route::Template(_) => "webhook",
            Route::NotFound => "not_found",
            Route::MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

/// Maps a method and raw path to a route.
pub fn route<'p>(method: &Method, path: &'p str) -> Route<'p> {
    let probe = |route: Route<'p>| {
        if method == Method::GET || method == Method::HEAD {
            route
        } else {
            Route::MethodNotAllowed("GET, HEAD")
        }
    };
    match path {
        "/healthz" => return probe(Route::Healthz),
        "/readyz" => return probe(Route::Readyz),
        "/metrics" => return probe(Route::Metrics),
        _ => {}
    }
    let webhook = method == Method::POST || method == Method::GET;
    let name = path.strip_prefix('/').unwrap_or(path);
    // Twilio signs exactly the configured URL; a trailing slash there still names the template.
    let name = name.strip_suffix('/').unwrap_or(name);
    if name == "status" || name.starts_with("status/") {
        if !valid_name(name) {
            return Route::NotFound;
        }
        return if webhook {
            Route::Status
        } else {
            Route::MethodNotAllowed("GET, POST")
        };
    }
    if !valid_name(name) {
        return Route::NotFound;
    }
    if webhook {
        Route::Template(name)
    } else {
        Route::MethodNotAllowed("GET, POST")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/healthz"), Route::Healthz);
        assert_eq!(
            route(&Method::POST, "/healthz"),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route(&Method::POST, "/status"), Route::Status);
        assert_eq!(route(&Method::POST, "/status/calls"), Route::Status);
        assert_eq!(route(&Method::POST, "/voice"), Route::Template("voice"));
        assert_eq!(route(&Method::GET, "/voice/"), Route::Template("voice"));
        assert_eq!(
            route(&Method::POST, "/menu/sales"),
            Route::Template("menu/sales")
        );
        assert_eq!(
            route(&Method::PUT, "/voice"),
            Route::MethodNotAllowed("GET, POST")
        );
        for bad in [
            "/",
            "/../etc/passwd",
            "/a//b",
            "/a%2Fb",
            "/a.xml",
            "//",
            "/voice//",
        ] {
            assert_eq!(route(&Method::POST, bad), Route::NotFound, "{bad}");
        }
    }
}
