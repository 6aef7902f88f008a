//! The benchmark's own load client for what wrk cannot do here: a fixed request rate with latency
//! measured from each request's intended send time (so a stalled server is not hidden by a stalled
//! client), and the time from starting a server to its first answered webhook.
//!
//! ```text
//! loadgen rate    ADDR BODY_FILE SIGNATURE RATE SECONDS CONNECTIONS
//! loadgen startup ADDR BODY_FILE SIGNATURE -- COMMAND [ARGS...]
//! ```
//! Both POST the signed SMS webhook to `http://ADDR/sms` over plain HTTP/1.1 keep-alive and print
//! one `RESULT key=value ...` line.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn request(addr: &str, body: &str, signature: &str) -> Vec<u8> {
    format!(
        "POST /sms HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Twilio-Signature: {signature}\r\nI-Twilio-Idempotency-Token: \
         2b1f6a44-5a8e-4c1f-9a55-3c2d1e0f9b7a\r\nUser-Agent: TwilioProxy/1.1\r\nAccept: */*\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One answer read off a connection: its status and whether the server closes after it.
struct Reply {
    status: u16,
    close: bool,
}

/// Reads one HTTP/1.1 response with a Content-Length body (or one ended by the server closing).
async fn read_reply(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Reply> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let close = header("connection:").is_some_and(|v| v == "close");
    match header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => {
            while buf.len() < head_end + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => while stream.read(&mut chunk).await? != 0 {},
    }
    Ok(Reply { status, close })
}

/// How long before a send time a connection stops sleeping and spins on the clock.
const SPIN_BEFORE: Duration = Duration::from_millis(3);

/// Sends this connection's share of the schedule and returns each latency in microseconds.
async fn connection(
    addr: String,
    request: std::sync::Arc<Vec<u8>>,
    start: Instant,
    interval: Duration,
    first: u64,
    step: u64,
    total: u64,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut index = first;
    while index < total {
        let intended = start + interval.mul_f64(index as f64);
        // Sleep coarsely, then spin. tokio's timer rounds a deadline up to its next millisecond tick
        // and fires a little after it, so a sleep must end well before the send time: with only a
        // millisecond to spare, sends drifted late onto shared ticks and went out in bursts, which
        // both delayed them (counted as latency) and made the server take them in clumps.
        loop {
            let now = Instant::now();
            if now >= intended {
                break;
            }
            if intended - now > SPIN_BEFORE + Duration::from_millis(1) {
                tokio::time::sleep(intended - now - SPIN_BEFORE).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        index += step;
        let mut conn = match stream.take() {
            Some(s) => s,
            None => match TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(_) => {
                    failures += 1;
                    continue;
                }
            },
        };
        if conn.write_all(&request).await.is_err() {
            failures += 1;
            continue;
        }
        match read_reply(&mut conn, &mut buf).await {
            Ok(reply) => {
                let elapsed = intended.elapsed().as_micros();
                latencies.push(u32::try_from(elapsed).unwrap_or(u32::MAX));
                if reply.status != 200 {
                    failures += 1;
                }
                if !reply.close {
                    stream = Some(conn);
                }
            }
            Err(_) => failures += 1,
        }
    }
    (latencies, failures)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn rate(args: &[String]) -> Result<(), String> {
    let [addr, body_file, signature, rate, seconds, connections] = args else {
        return Err("rate ADDR BODY_FILE SIGNATURE RATE SECONDS CONNECTIONS".into());
    };
    let body = std::fs::read_to_string(body_file).map_err(|e| format!("{body_file}: {e}"))?;
    let rate: f64 = rate.parse().map_err(|_| "RATE: a number")?;
    let seconds: f64 = seconds.parse().map_err(|_| "SECONDS: a number")?;
    let connections: u64 = connections.parse().map_err(|_| "CONNECTIONS: a number")?;
    if rate <= 0.0 || seconds <= 0.0 || connections == 0 {
        return Err("RATE, SECONDS and CONNECTIONS must be positive".into());
    }
    let request = std::sync::Arc::new(request(addr, &body, signature));
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = (0..connections)
        .map(|k| {
            tokio::spawn(connection(
                addr.clone(),
                request.clone(),
                start,
                interval,
                k,
                connections,
                total,
            ))
        })
        .collect();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failures += f;
    }
    let took = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "RESULT target_rps={rate:.0} achieved_rps={:.0} answered={} failed={failures} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        latencies.len() as f64 / took,
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        latencies.last().copied().unwrap_or(0),
    );
    Ok(())
}

async fn startup(args: &[String]) -> Result<(), String> {
    let [addr, body_file, signature, dashes, command @ ..] = args else {
        return Err("startup ADDR BODY_FILE SIGNATURE -- COMMAND [ARGS...]".into());
    };
    if dashes != "--" || command.is_empty() {
        return Err("startup ADDR BODY_FILE SIGNATURE -- COMMAND [ARGS...]".into());
    }
    let body = std::fs::read_to_string(body_file).map_err(|e| format!("{body_file}: {e}"))?;
    let request = request(addr, &body, signature);
    let started = Instant::now();
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .spawn()
        .map_err(|e| format!("{}: {e}", command[0]))?;
    let deadline = started + Duration::from_secs(30);
    let mut buf = Vec::new();
    let result = loop {
        if Instant::now() > deadline {
            break Err("no answer within 30 s".to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("server exited: {status}"));
        }
        if let Ok(mut stream) = TcpStream::connect(addr.as_str()).await {
            if stream.write_all(&request).await.is_ok() {
                if let Ok(reply) = read_reply(&mut stream, &mut buf).await {
                    if reply.status == 200 {
                        break Ok(started.elapsed());
                    }
                    break Err(format!("first answer was {}", reply.status));
                }
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    // SIGTERM so a pre-forking server (gunicorn) takes its workers down with it.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let took = result?;
    println!("RESULT startup_ms={:.1}", took.as_secs_f64() * 1000.0);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("rate") => rate(&args[1..]).await,
            Some("startup") => startup(&args[1..]).await,
            _ => Err("usage: loadgen rate|startup ...".into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
