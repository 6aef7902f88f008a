//! The shared journal: a PostgreSQL table, for replicas without a durable disk of their own.
//! A batch is appended with one statement over arrays, so a group commit is two round trips.

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    params_from_json, params_to_json, Appended, Event, JournalError, NewEvent, Stats, Store,
};

const TABLE: &str = "twiml_failover_events";

const COLUMNS: &str =
    "id, received_at_ms, role, method, url, path, params, error_code, error_url, \
     idempotency_key, conversation, account_sid, delivered_at_ms, attempts, next_attempt_at_ms, \
     last_error";

fn err(e: postgres::Error) -> JournalError {
    // The driver's messages name the server's complaint, never the connection string; the
    // cause (an I/O or TLS error) says what actually went wrong.
    match std::error::Error::source(&e) {
        Some(cause) => JournalError::new(format!("postgres: {e}: {cause}")),
        None => JournalError::new(format!("postgres: {e}")),
    }
}

/// A connection to a PostgreSQL journal.
pub struct PostgresStore {
    client: Client,
}

impl PostgresStore {
    /// Connects and creates the table. `sslmode=require` (or `verify-full`) uses TLS (rustls),
    /// verifying the server against the public web roots plus `sslrootcert=FILE` (PEM) when given;
    /// without it the connection is plain (loopback or a private network only).
    pub fn connect(url: &str) -> Result<PostgresStore, JournalError> {
        let mut client = open_client(url)?;
        let mut tx = client.transaction().map_err(err)?;
        // Replicas starting together would race on CREATE TABLE; one lock serialises them.
        // The "already exists, skipping" notices of every reconnect are not worth a log line.
        tx.batch_execute(
            "SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock(7300412)",
        )
        .map_err(err)?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (
                id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                idempotency_key    TEXT    NOT NULL UNIQUE,
                received_at_ms     BIGINT  NOT NULL,
                role               TEXT    NOT NULL,
                method             TEXT    NOT NULL,
                url                TEXT    NOT NULL,
                path               TEXT    NOT NULL,
                params             TEXT    NOT NULL,
                error_code         TEXT,
                error_url          TEXT,
                conversation       TEXT    NOT NULL,
                account_sid        TEXT,
                delivered_at_ms    BIGINT,
                attempts           INTEGER NOT NULL DEFAULT 0,
                next_attempt_at_ms BIGINT  NOT NULL,
                last_error         TEXT
            );
            CREATE INDEX IF NOT EXISTS {TABLE}_undelivered ON {TABLE} (id)
                WHERE delivered_at_ms IS NULL;
            CREATE INDEX IF NOT EXISTS {TABLE}_received ON {TABLE} (received_at_ms);
            CREATE INDEX IF NOT EXISTS {TABLE}_delivered ON {TABLE} (delivered_at_ms)
                WHERE delivered_at_ms IS NOT NULL;"
        ))
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(PostgresStore { client })
    }

    fn query(
        &mut self,
        sql: &str,
        args: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Event>, JournalError> {
        let rows = self.client.query(sql, args).map_err(err)?;
        rows.iter().map(event_from_row).collect()
    }
}

/// A plain driver connection to the journal's server, set up like the store's (TLS by `sslmode`,
/// `PGPASSWORD`, connect timeout); the forwarder holds its leadership lock on one.
pub fn open_client(url: &str) -> Result<Client, JournalError> {
    let (mut config, tls) = driver_config(url)?;
    // libpq's convention: the password may come from the environment instead of the URL.
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let client = match tls {
        Some(root_cert) => config
            .connect(MakeRustlsConnect::new(tls_config(root_cert.as_deref())?))
            .map_err(err)?,
        None => config.connect(NoTls).map_err(err)?,
    };
    Ok(client)
}

/// The driver's settings for a journal URL, and whether to use TLS (with an extra root
/// certificate file). `sslrootcert` and libpq's `verify-full`/`verify-ca` are handled here, since
/// the driver knows neither.
pub fn driver_config(
    url: &str,
) -> Result<(postgres::Config, Option<Option<String>>), JournalError> {
    let (url, root_cert) = take_query_param(url, "sslrootcert");
    let (url, verify) = match take_query_param(&url, "sslmode") {
        (rest, Some(mode)) if mode == "verify-full" || mode == "verify-ca" => {
            (add_query_param(&rest, "sslmode", "require"), true)
        }
        _ => (url, false),
    };
    let config: postgres::Config = url
        .parse()
        .map_err(|_| JournalError::new("not a valid postgres URL"))?;
    // rustls always verifies the server's certificate and name, as libpq's verify-full does.
    let tls = (verify || config.get_ssl_mode() == SslMode::Require).then_some(root_cert);
    Ok((config, tls))
}

/// Removes `name=value` from the URL's query (the driver refuses options it does not know).
fn take_query_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                false
            }
            _ => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), value)
    } else {
        (format!("{base}?{}", rest.join("&")), value)
    }
}

fn add_query_param(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, JournalError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = root_cert {
        let certs = crate::operator_file::read_certificates(std::path::Path::new(path))
            .map_err(|e| JournalError::new(format!("sslrootcert {e}")))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| JournalError::new(format!("sslrootcert {path}: {e}")))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| JournalError::new(format!("tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

fn event_from_row(row: &Row) -> Result<Event, JournalError> {
    let get = |e: postgres::Error| err(e);
    let params: String = row.try_get(6).map_err(get)?;
    let attempts: i32 = row.try_get(13).map_err(get)?;
    Ok(Event {
        id: row.try_get(0).map_err(get)?,
        event: NewEvent {
            received_at_ms: row.try_get(1).map_err(get)?,
            role: row.try_get(2).map_err(get)?,
            method: row.try_get(3).map_err(get)?,
            url: row.try_get(4).map_err(get)?,
            path: row.try_get(5).map_err(get)?,
            params: params_from_json(&params)?,
            error_code: row.try_get(7).map_err(get)?,
            error_url: row.try_get(8).map_err(get)?,
            idempotency_key: row.try_get(9).map_err(get)?,
            conversation: row.try_get(10).map_err(get)?,
            account_sid: row.try_get(11).map_err(get)?,
        },
        delivered_at_ms: row.try_get(12).map_err(get)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at_ms: row.try_get(14).map_err(get)?,
        last_error: row.try_get(15).map_err(get)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    fn append(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, JournalError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = batch.iter().map(|e| e.idempotency_key.as_str()).collect();
        let received: Vec<i64> = batch.iter().map(|e| e.received_at_ms).collect();
        let roles: Vec<&str> = batch.iter().map(|e| e.role.as_str()).collect();
        let methods: Vec<&str> = batch.iter().map(|e| e.method.as_str()).collect();
        let urls: Vec<&str> = batch.iter().map(|e| e.url.as_str()).collect();
        let paths: Vec<&str> = batch.iter().map(|e| e.path.as_str()).collect();
        let params: Vec<String> = batch.iter().map(|e| params_to_json(&e.params)).collect();
        let codes: Vec<Option<&str>> = batch.iter().map(|e| e.error_code.as_deref()).collect();
        let error_urls: Vec<Option<&str>> = batch.iter().map(|e| e.error_url.as_deref()).collect();
        let conversations: Vec<&str> = batch.iter().map(|e| e.conversation.as_str()).collect();
        let accounts: Vec<Option<&str>> = batch.iter().map(|e| e.account_sid.as_deref()).collect();

        let mut tx = self.client.transaction().map_err(err)?;
        // Only rows to insert reach the INSERT: the first of a key repeated inside the batch
        // (DISTINCT ON), and only keys not already stored, because a row that meets ON CONFLICT
        // has already drawn its id from the sequence, and `journal list` would show a gap for
        // every Twilio retry. ON CONFLICT stays for two replicas inserting the same key at once
        // (that rare race still uses up an id). ORDER BY ord keeps ids in arrival order.
        let inserted = tx
            .query(
                &format!(
                    "INSERT INTO {TABLE} (idempotency_key, received_at_ms, role, method, url, path, \
                     params, error_code, error_url, conversation, account_sid, next_attempt_at_ms) \
                     SELECT k, r, ro, m, u, p, pa, ec, eu, c, a, r FROM ( \
                       SELECT DISTINCT ON (k) * FROM unnest( \
                         $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                         $11::text[]) \
                       WITH ORDINALITY AS t(k, r, ro, m, u, p, pa, ec, eu, c, a, ord) \
                       ORDER BY k, ord) AS first \
                     WHERE NOT EXISTS (SELECT 1 FROM {TABLE} e WHERE e.idempotency_key = first.k) \
                     ORDER BY ord \
                     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key"
                ),
                &[
                    &keys,
                    &received,
                    &roles,
                    &methods,
                    &urls,
                    &paths,
                    &params,
                    &codes,
                    &error_urls,
                    &conversations,
                    &accounts,
                ],
            )
            .map_err(err)?;
        let mut new: HashMap<String, i64> = HashMap::with_capacity(inserted.len());
        for row in &inserted {
            new.insert(row.get(1), row.get(0));
        }
        let mut old: HashMap<String, i64> = HashMap::new();
        if inserted.len() < batch.len() {
            let missing: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !new.contains_key(*k))
                .collect();
            for row in tx
                .query(
                    &format!(
                        "SELECT id, idempotency_key FROM {TABLE} WHERE idempotency_key = ANY($1)"
                    ),
                    &[&missing],
                )
                .map_err(err)?
            {
                old.insert(row.get(1), row.get(0));
            }
        }
        tx.commit().map_err(err)?;
        let mut out = Vec::with_capacity(batch.len());
        for key in keys {
            // The first occurrence of a key inserted now is New; any later one is a duplicate.
            if let Some(id) = new.remove(key) {
                old.insert(key.to_string(), id);
                out.push(Appended::New(id));
            } else {
                let id = old
                    .get(key)
                    .copied()
                    .ok_or_else(|| JournalError::new("postgres: appended row not found"))?;
                out.push(Appended::Duplicate(id));
            }
        }
        Ok(out)
    }

    fn undelivered(&mut self, after_id: i64, n: usize) -> Result<Vec<Event>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE delivered_at_ms IS NULL AND id > $1 \
                 ORDER BY id LIMIT $2"
            ),
            &[&after_id, &limit(n)],
        )
    }

    fn mark_delivered(&mut self, id: i64, at_ms: i64) -> Result<(), JournalError> {
        self.client
            .execute(
                &format!(
                    "UPDATE {TABLE} SET delivered_at_ms = $2 WHERE id = $1 AND delivered_at_ms IS NULL"
                ),
                &[&id, &at_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn record_failure(
        &mut self,
        id: i64,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), JournalError> {
        self.client
            .execute(
                &format!(
                    "UPDATE {TABLE} SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at_ms = $3 WHERE id = $1"
                ),
                &[&id, &error, &next_attempt_at_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn stats(&mut self) -> Result<Stats, JournalError> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE delivered_at_ms IS NULL), \
                     min(received_at_ms) FILTER (WHERE delivered_at_ms IS NULL) FROM {TABLE}"
                ),
                &[],
            )
            .map_err(err)?;
        let total = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        let undelivered = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
        Ok(Stats {
            total,
            undelivered,
            oldest_undelivered_ms: row.get(2),
            delivered: total.saturating_sub(undelivered),
        })
    }

    fn list(&mut self, since_ms: Option<i64>, n: usize) -> Result<Vec<Event>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE received_at_ms >= $1 \
                 ORDER BY received_at_ms, id LIMIT $2"
            ),
            &[&since_ms.unwrap_or(i64::MIN), &limit(n)],
        )
    }

    fn get(&mut self, id: i64) -> Result<Option<Event>, JournalError> {
        Ok(self
            .query(
                &format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"),
                &[&id],
            )?
            .pop())
    }

    fn prune_delivered(&mut self, before_ms: i64) -> Result<u64, JournalError> {
        self.client
            .execute(
                &format!(
                    "DELETE FROM {TABLE} WHERE delivered_at_ms IS NOT NULL AND delivered_at_ms < $1"
                ),
                &[&before_ms],
            )
            .map_err(err)
    }

    fn prune_received(&mut self, before_ms: i64) -> Result<u64, JournalError> {
        self.client
            .execute(
                &format!("DELETE FROM {TABLE} WHERE received_at_ms < $1"),
                &[&before_ms],
            )
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_options_are_taken_out_of_the_url() {
        assert_eq!(
            take_query_param(
                "postgres://h/db?sslmode=require&sslrootcert=%2Fca.pem",
                "sslrootcert"
            ),
            (
                "postgres://h/db?sslmode=require".to_string(),
                Some("/ca.pem".to_string())
            )
        );
        assert_eq!(
            take_query_param("postgres://h/db?sslrootcert=/ca.pem", "sslrootcert"),
            ("postgres://h/db".to_string(), Some("/ca.pem".to_string()))
        );
        assert_eq!(
            take_query_param("postgres://h/db", "sslmode"),
            ("postgres://h/db".to_string(), None)
        );
        assert_eq!(
            add_query_param("postgres://h/db", "sslmode", "require"),
            "postgres://h/db?sslmode=require"
        );
    }

    #[test]
    fn a_missing_root_certificate_is_named() {
        let e = tls_config(Some("/no/such/ca.pem")).unwrap_err();
        assert!(e.to_string().contains("/no/such/ca.pem"), "{e}");
        assert!(tls_config(None).is_ok());
    }
}
