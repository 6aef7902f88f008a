//! `monitor`'s flags, each with its environment twin, and their checks (a problem names the flag).
//! `cli` only names this struct as the `monitor` subcommand's arguments. Pure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::LogFormat;
use crate::numbers::plan::Selection;

/// Flags of `monitor`. REST credentials come from the environment only, as for `numbers`:
/// TWILIO_ACCOUNT_SID and TWILIO_API_KEY + TWILIO_API_SECRET, or TWILIO_AUTH_TOKEN.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// Numbers (E.164 or PN… sid) to watch [default: all].
    #[arg(value_name = "NUMBER")]
    pub numbers: Vec<String>,
    /// Also watch numbers whose phone number or friendly name matches (`*`, `?`); repeatable.
    #[arg(long = "match", value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// The intended wiring, as for `numbers` (TOML: primary_base, fallback_base, overrides, ...).
    #[arg(long, env = "TWIML_FAILOVER_NUMBERS_WIRING", value_name = "FILE")]
    pub wiring: Option<PathBuf>,
    /// Address of /metrics, /status, /healthz and /readyz.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_LISTEN",
        default_value = "127.0.0.1:9090",
        value_name = "ADDR"
    )]
    pub listen: String,
    /// Seconds between rounds.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_INTERVAL",
        default_value = "300",
        value_name = "SECONDS"
    )]
    pub interval: f64,
    /// Each wait between rounds is the interval plus or minus this share of it, at random.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_JITTER",
        default_value = "0.1",
        value_name = "RATIO"
    )]
    pub jitter: f64,
    /// REST API requests per round at most (each retry counts).
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_API_BUDGET",
        default_value = "200",
        value_name = "N"
    )]
    pub api_budget: u64,
    /// Rounds between full re-reads of every list (each Messaging Service's numbers included).
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_FULL_READ_EVERY",
        default_value = "12",
        value_name = "N"
    )]
    pub full_read_every: u64,
    /// REST API requests per second at most.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_RATE",
        default_value = "5",
        value_name = "N"
    )]
    pub rate: f64,
    /// Items per list page (Twilio allows 1000 at most).
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_PAGE_SIZE",
        default_value = "1000",
        value_name = "N"
    )]
    pub page_size: u32,
    /// Probes running at once.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_PROBES_IN_FLIGHT",
        default_value = "8",
        value_name = "N"
    )]
    pub probes_in_flight: usize,
    /// Distinct URLs probed per round at most; numbers whose URLs are beyond it are reported as
    /// not probed.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_MAX_URLS",
        default_value = "200",
        value_name = "N"
    )]
    pub max_urls: usize,
    /// Also send signed webhooks to URLs under this prefix, though not on the wiring file's bases
    /// (another app: a synthetic SMS could make it act); repeatable or comma-separated.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_SIGNED_PROBE",
        value_delimiter = ',',
        value_name = "URL_PREFIX"
    )]
    pub signed_probe: Vec<String>,
    /// PEM CA certificates trusted by the probes instead of the public roots Twilio trusts.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_PROBE_CA_FILE",
        value_name = "FILE"
    )]
    pub probe_ca_file: Option<PathBuf>,
    /// A certificate expiring within this many days is a problem.
    #[arg(
        long,
        env = "TWIML_FAILOVER_MONITOR_CERTIFICATE_WARNING_DAYS",
        default_value = "14",
        value_name = "DAYS"
    )]
    pub certificate_warning_days: f64,
    /// File holding the account's auth token, which signs the probes (instead of TWILIO_AUTH_TOKEN).
    #[arg(long, env = "TWIML_FAILOVER_AUTH_TOKEN_FILE", value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(
        long,
        env = "TWIML_FAILOVER_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: String,
    /// Run one round, print the status JSON on stdout, exit 0 (all numbers pass), 1 (one fails) or
    /// 2 (the round could not be made).
    #[arg(long)]
    pub once: bool,
    /// Send every API request to this loopback base instead of Twilio (tests).
    #[arg(long, env = "TWIML_FAILOVER_TWILIO_API_BASE", value_name = "URL")]
    pub api_base: Option<String>,
}

/// The longest interval: a day. A monitor that looks less often than that is not one.
const MAX_INTERVAL: f64 = 86_400.0;

impl MonitorArgs {
    /// The first flag whose value cannot work, with why.
    pub fn problem(&self) -> Option<String> {
        let checks: [(bool, String); 9] = [
            (
                !(self.interval >= 1.0 && self.interval <= MAX_INTERVAL),
                format!("interval: {} is not within 1–86400 seconds", self.interval),
            ),
            (
                !(0.0..=0.5).contains(&self.jitter),
                format!("jitter: {} is not within 0–0.5", self.jitter),
            ),
            (
                self.api_budget == 0,
                "api-budget: at least 1 request per round".into(),
            ),
            (
                self.full_read_every == 0,
                "full-read-every: at least 1 (every round)".into(),
            ),
            (
                !(self.rate > 0.0 && self.rate <= 100.0),
                format!(
                    "rate: {} is not within (0, 100] requests per second",
                    self.rate
                ),
            ),
            (
                !(1..=1000).contains(&self.page_size),
                format!("page-size: {} is not within 1–1000", self.page_size),
            ),
            (
                !(1..=256).contains(&self.probes_in_flight),
                format!(
                    "probes-in-flight: {} is not within 1–256",
                    self.probes_in_flight
                ),
            ),
            (
                !(1..=10_000).contains(&self.max_urls),
                format!("max-urls: {} is not within 1–10000", self.max_urls),
            ),
            (
                !(0.0..=365.0).contains(&self.certificate_warning_days),
                format!(
                    "certificate-warning-days: {} is not within 0–365",
                    self.certificate_warning_days
                ),
            ),
        ];
        if let Some((_, why)) = checks.into_iter().find(|(bad, _)| *bad) {
            return Some(why);
        }
        if let Err(e) = self.log_format() {
            return Some(e);
        }
        if let Err(e) = self.listen_addr() {
            return Some(e);
        }
        self.signed_probe
            .iter()
            .find(|p| !(p.starts_with("https://") || p.starts_with("http://")))
            .map(|p| format!("signed-probe: {p:?} is not an http(s):// URL prefix"))
    }

    /// `--listen` as an address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "listen: {:?} is not an address like 0.0.0.0:9090",
                self.listen
            )
        })
    }

    /// `--interval`.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval.clamp(1.0, MAX_INTERVAL))
    }

    /// `--certificate-warning-days`.
    pub fn certificate_warning(&self) -> Duration {
        Duration::from_secs_f64(self.certificate_warning_days.clamp(0.0, 365.0) * 86_400.0)
    }

    /// `--log-format`.
    pub fn log_format(&self) -> Result<LogFormat, String> {
        LogFormat::NAMES
            .iter()
            .find(|(name, _)| *name == self.log_format)
            .map(|(_, format)| *format)
            .ok_or_else(|| format!("log-format: {:?} is neither text nor json", self.log_format))
    }

    /// The numbers to watch, as `numbers` selects them.
    pub fn selection(&self) -> Selection {
        Selection {
            numbers: self.numbers.clone(),
            patterns: self.patterns.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MonitorArgs,
    }

    fn parse(extra: &[&str]) -> MonitorArgs {
        let mut argv = vec!["monitor"];
        argv.extend(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults_pass_and_each_bad_value_names_its_flag() {
        let a = parse(&[]);
        assert_eq!(a.problem(), None);
        assert_eq!(a.interval(), Duration::from_secs(300));
        assert_eq!(a.listen_addr().unwrap().port(), 9090);
        for (flags, want) in [
            (vec!["--interval", "0.5"], "interval:"),
            (vec!["--jitter", "0.9"], "jitter:"),
            (vec!["--api-budget", "0"], "api-budget:"),
            (vec!["--full-read-every", "0"], "full-read-every:"),
            (vec!["--rate", "0"], "rate:"),
            (vec!["--page-size", "1001"], "page-size:"),
            (vec!["--probes-in-flight", "0"], "probes-in-flight:"),
            (vec!["--max-urls", "0"], "max-urls:"),
            (
                vec!["--certificate-warning-days", "400"],
                "certificate-warning-days:",
            ),
            (vec!["--log-format", "xml"], "log-format:"),
            (vec!["--listen", "9090"], "listen:"),
            (vec!["--signed-probe", "crm.example.org"], "signed-probe:"),
        ] {
            let problem = parse(&flags).problem().unwrap_or_default();
            assert!(problem.starts_with(want), "{flags:?}: {problem}");
        }
        let many = parse(&["--signed-probe", "https://a.example/x,https://b.example"]);
        assert_eq!(many.signed_probe.len(), 2);
        assert_eq!(many.problem(), None);
    }
}
