//! The listening socket: bound so that it can close without resetting what the kernel has already
//! accepted, and that close. I/O.
//!
//! The race: the kernel completes TCP handshakes on its own and queues the connections until the
//! process calls accept(). Closing the socket resets every connection still in that queue, and
//! drops every handshake still under way (its client then sends its request into a reset): the
//! client sent its request and gets RST, although nothing refused it. Breaking out of the accept
//! loop and dropping the listener (what most servers do) therefore loses the last few connections
//! of a restart under load.
//!
//! So, before closing, new handshakes are refused: their SYN is dropped, while the final ACK of a
//! handshake already under way still completes it. Queued connections are accepted and served
//! until the queue has been empty for a moment, and only then is the socket closed. A client whose
//! SYN was dropped retransmits it about a second later and is then refused (nothing listens) or
//! reaches the next process on the same address: an error it sees before it sends anything, never
//! a reset after sending a request. Two ways to drop the SYNs, tried in this order (Linux):
//!
//! - a socket filter (`SO_ATTACH_FILTER`) that drops segments with SYN set and ACK clear. Linux
//!   refuses it on TCP sockets without `CAP_NET_ADMIN`, which the shipped manifests drop.
//! - a sink, unprivileged: the listener is bound with `SO_REUSEPORT` (set after an exclusive
//!   bind, so a second server on the same address still fails), and at shutdown a second
//!   listening socket joins its group with a backlog of 0. A connection of our own to ourselves
//!   (the plug, steered into the sink by its source address and port) fills its accept queue;
//!   then a classic BPF program
//!   attached to the group (`SO_ATTACH_REUSEPORT_CBPF`, allowed to any process) sends every new SYN
//!   to the sink, where the kernel drops it because the queue is full (`tcp_conn_request`:
//!   `sk_acceptq_is_full`). Everything else still goes to the listener; a handshake's final ACK
//!   never goes through the group at all (the kernel finds its request socket first), so
//!   handshakes under way complete on the listener as with the filter.
//!
//! Without either (other systems, a listener bound elsewhere without `SO_REUSEPORT`) the queue is
//! still emptied before closing, which narrows the race to connections arriving in the last moment.
//! `docs/production.md` ("Restarts") has what each way loses, measured by `tests/restart.rs`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

/// How long the accept queue must stay empty before the socket is closed: longer than a handshake
/// takes between a load balancer and its target (a round trip inside one network).
const QUIET: Duration = Duration::from_millis(200);

/// Longest time spent emptying the queue, in case handshakes keep completing (no refusal).
const MAX_EMPTYING: Duration = Duration::from_secs(2);

/// The accept queue's length while serving (what tokio's `TcpListener::bind` uses).
const BACKLOG: i32 = 1024;

/// How new handshakes were refused before the listener closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The SYN-dropping socket filter (needs `CAP_NET_ADMIN`).
    Filter,
    /// The reuseport sink with its plug (unprivileged).
    Sink,
    /// Neither could be set up: the queue was only emptied before closing.
    None,
}

impl Refusal {
    /// The name logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Filter => "socket filter",
            Refusal::Sink => "reuseport sink",
            Refusal::None => "none",
        }
    }
}

/// What closing did.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    /// How new handshakes were refused.
    pub refusal: Refusal,
    /// Connections accepted from the queue after the refusal.
    pub queued: usize,
}

/// Binds `addr` for serving, ready for [`close`]: exclusively (a second server on the same
/// address fails as with a plain bind), then `SO_REUSEPORT` before listening, so that only a
/// socket of this same user that asks for it can join (the sink does, at shutdown).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std and tokio do: rebinding must not wait for the last process's TIME_WAIT connections.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    #[cfg(target_os = "linux")]
    socket.set_reuse_port(true)?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Refuses new handshakes, hands every connection already queued to `serve`, then closes.
pub async fn close<F, Fut>(listener: TcpListener, mut serve: F) -> Closed
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let (refusal, sink) = refuse_new_handshakes(&listener).await;
    let deadline = tokio::time::Instant::now() + MAX_EMPTYING;
    let mut queued = 0;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(QUIET, listener.accept()).await {
            Ok(Ok((stream, _))) => {
                queued += 1;
                serve(stream).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "accept failed while closing"),
            Err(_) => break,
        }
    }
    // The listener first: while it closes, the sink still drops new SYNs.
    drop(listener);
    drop(sink);
    Closed { refusal, queued }
}

/// Tries each way in turn; what it returns must live until the listener is closed.
#[cfg(target_os = "linux")]
async fn refuse_new_handshakes(listener: &TcpListener) -> (Refusal, Option<linux::Sink>) {
    let filter = match linux::attach_filter(listener) {
        Ok(()) => return (Refusal::Filter, None),
        Err(e) => e,
    };
    match linux::Sink::open(listener).await {
        Ok(sink) => (Refusal::Sink, Some(sink)),
        Err(e) => {
            tracing::warn!(
                filter = %filter,
                sink = %e,
                "cannot refuse new handshakes; emptying the queue, then closing the listener"
            );
            (Refusal::None, None)
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn refuse_new_handshakes(_listener: &TcpListener) -> (Refusal, Option<()>) {
    tracing::warn!("cannot refuse new handshakes on this system; emptying the queue, then closing");
    (Refusal::None, None)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::AsFd;
    use std::time::Duration;

    use nix::libc::{sock_filter, sock_fprog};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};
    use socket2::{Domain, SockFilter, SockRef, Socket, Type};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    /// How long the plug may take to land in the sink (a handshake over the loopback: microseconds).
    const PLUG_TIMEOUT: Duration = Duration::from_secs(1);

    // Classic BPF opcodes (linux/filter.h).
    const LD_W_ABS: u16 = 0x20;
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_H_IND: u16 = 0x48;
    const LD_B_IND: u16 = 0x50;
    const LDX_B_MSH: u16 = 0xb1;
    const AND_K: u16 = 0x54;
    const JA: u16 = 0x05;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    /// Loads relative to the IP header (`SKF_NET_OFF`), the same in a socket filter (which sees the
    /// packet from the TCP header) and a reuseport program (which sees it from the payload).
    const NET: u32 = 0xfff0_0000;
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;

    /// One instruction: opcode, jump-if-true, jump-if-false, constant.
    type Insn = (u16, u8, u8, u32);

    /// Returns `new` for a segment that opens a handshake (SYN without ACK), `other` for any
    /// other, IPv4 or IPv6 (without extension headers).
    fn new_handshake(new: u32, other: u32) -> Vec<Insn> {
        vec![
            (LD_B_ABS, 0, 0, NET),
            (AND_K, 0, 0, 0xf0),
            (JEQ_K, 3, 0, 0x60),
            // IPv4: X = the header's length, then the TCP flags byte.
            (LDX_B_MSH, 0, 0, NET),
            (LD_B_IND, 0, 0, NET + 13),
            (JA, 0, 0, 1),
            // IPv6: a fixed 40-byte header.
            (LD_B_ABS, 0, 0, NET + 40 + 13),
            (JSET_K, 2, 0, ACK),
            (JSET_K, 0, 1, SYN),
            (RET_K, 0, 0, new),
            (RET_K, 0, 0, other),
        ]
    }

    /// Returns `yes` for segments coming from `from` (address and port), `other` for any other.
    fn coming_from(from: SocketAddr, yes: u32, other: u32) -> Vec<Insn> {
        // Loads, and compares that go on to the next line on a match, to `other` otherwise.
        let mut steps: Vec<(u16, u32)> = vec![(LD_B_ABS, NET), (AND_K, 0xf0)];
        match from.ip() {
            IpAddr::V4(ip) => steps.extend([
                (JEQ_K, 0x40),
                (LD_W_ABS, NET + 12),
                (JEQ_K, u32::from(ip)),
                (LDX_B_MSH, NET),
                (LD_H_IND, NET),
            ]),
            IpAddr::V6(ip) => {
                steps.push((JEQ_K, 0x60));
                for (i, word) in ip.octets().chunks(4).enumerate() {
                    steps.push((LD_W_ABS, NET + 8 + 4 * i as u32));
                    steps.push((JEQ_K, u32::from_be_bytes(word.try_into().unwrap())));
                }
                steps.push((LD_H_ABS, NET + 40));
            }
        }
        steps.push((JEQ_K, u32::from(from.port())));
        let other_line = steps.len() + 1;
        let mut program: Vec<Insn> = steps
            .into_iter()
            .enumerate()
            .map(|(line, (code, k))| {
                // Jumps count from the next line.
                let to_other = if code == JEQ_K {
                    other_line - line - 1
                } else {
                    0
                };
                (code, 0, to_other as u8, k)
            })
            .collect();
        program.push((RET_K, 0, 0, yes));
        program.push((RET_K, 0, 0, other));
        program
    }

    /// Drops new handshakes with a socket filter on the listener itself.
    pub fn attach_filter(listener: &TcpListener) -> io::Result<()> {
        let program: Vec<SockFilter> = new_handshake(0, u32::MAX)
            .into_iter()
            .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
            .collect();
        SockRef::from(listener).attach_filter(&program)
    }

    /// Sets how the listener's reuseport group picks a socket for each segment: the program
    /// returns an index in the group (the listener is 0, the sink 1; out of range falls back to the
    /// kernel's hash).
    fn steer(listener: &TcpListener, program: Vec<Insn>) -> io::Result<()> {
        let mut program: Vec<sock_filter> = program
            .into_iter()
            .map(|(code, jt, jf, k)| sock_filter { code, jt, jf, k })
            .collect();
        let fprog = sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        setsockopt(&listener.as_fd(), AttachReusePortCbpf, &fprog).map_err(io::Error::from)
    }

    /// A full listening socket in the listener's reuseport group, where new SYNs are sent to be
    /// dropped. Closing it (drop) ends the refusal.
    pub struct Sink {
        _sink: Socket,
        _plug: TcpStream,
    }

    impl Sink {
        pub async fn open(listener: &TcpListener) -> io::Result<Sink> {
            let local = listener.local_addr()?;
            let plug_ip = match local.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let plug = match plug_ip {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            plug.bind(SocketAddr::new(plug_ip, 0))?;
            // Only the plug goes to the sink (index 1) until it holds the sink's one place;
            // before the sink joins, index 1 does not exist and the kernel's hash picks the listener.
            steer(listener, coming_from(plug.local_addr()?, 1, 0)).map_err(|e| {
                let hint = "the listener has no reuseport group (bound without SO_REUSEPORT?)";
                io::Error::new(e.kind(), format!("{hint}: {e}"))
            })?;
            let sink = Socket::new(Domain::for_address(local), Type::STREAM, None)?;
            sink.set_reuse_address(true)?;
            sink.set_reuse_port(true)?;
            if local.is_ipv6() {
                sink.set_only_v6(SockRef::from(listener).only_v6()?)?;
            }
            sink.bind(&local.into())?;
            // Full as soon as one connection waits in it.
            sink.listen(0)?;
            let plug = tokio::time::timeout(
                PLUG_TIMEOUT,
                plug.connect(SocketAddr::new(plug_ip, local.port())),
            )
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the plug did not connect"))??;
            // Readable = a connection waits in its queue, and only the plug can reach it.
            let start = tokio::time::Instant::now();
            while !has_waiting(&sink)? {
                if start.elapsed() > PLUG_TIMEOUT {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the plug missed the sink",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            steer(listener, new_handshake(1, 0))?;
            Ok(Sink {
                _sink: sink,
                _plug: plug,
            })
        }
    }

    /// Whether a connection waits in a listening socket's accept queue (without taking it).
    fn has_waiting(socket: &Socket) -> io::Result<bool> {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        Ok(poll(&mut fds, PollTimeout::ZERO).map_err(io::Error::from)? > 0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_plug_program_jumps_to_its_last_two_lines() {
            for from in ["127.0.0.1:4000", "[::1]:4000"] {
                let p = coming_from(from.parse().unwrap(), 1, 0);
                let last = p.len() - 1;
                for (i, &(code, jt, jf, _)) in p.iter().enumerate() {
                    if code == JEQ_K {
                        assert_eq!(jt, 0, "{from} line {i}");
                        assert_eq!(i + 1 + jf as usize, last, "{from} line {i}");
                    }
                }
                assert_eq!(p[last - 1], (RET_K, 0, 0, 1));
                assert_eq!(p[last], (RET_K, 0, 0, 0));
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A client whose handshake stays under way: its final ACK waits for its first bytes.
    async fn under_way(addr: SocketAddr) -> TcpStream {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .unwrap();
        socket2::SockRef::from(&socket)
            .set_tcp_quickack(false)
            .unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// After the refusal (`with_filter`, or the sink): a new handshake gets no answer (its SYN is
    /// dropped, rather than reset); the connection already queued and the one whose handshake was
    /// under way are both accepted; once closed, connections are refused at once.
    async fn refuses_new_and_keeps_the_rest(listen: &str, connect: &str, with_filter: bool) {
        use tokio::io::AsyncWriteExt;
        let listener = bind(listen.parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let to = SocketAddr::new(connect.parse().unwrap(), port);
        let queued = TcpStream::connect(to).await.unwrap();
        let mut slow = under_way(to).await;
        let sink = if with_filter {
            linux::attach_filter(&listener).unwrap();
            None
        } else {
            Some(linux::Sink::open(&listener).await.unwrap())
        };
        let late = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(to)).await;
        assert!(late.is_err(), "{listen}: connect should hang: {late:?}");
        slow.write_all(b"x").await.unwrap();
        for client in [&queued, &slow] {
            let (_, peer) = tokio::time::timeout(Duration::from_secs(1), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let client = client.local_addr().unwrap();
            // A dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d.
            assert_eq!(peer.ip().to_canonical(), client.ip(), "{listen}");
            assert_eq!(peer.port(), client.port(), "{listen}");
        }
        drop((listener, sink));
        let closed = TcpStream::connect(to).await.unwrap_err();
        assert_eq!(closed.kind(), io::ErrorKind::ConnectionRefused, "{listen}");
    }

    #[tokio::test]
    async fn the_filter_refuses_new_handshakes_where_it_attaches() {
        let probe = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        match linux::attach_filter(&probe) {
            // Root, or CAP_NET_ADMIN.
            Ok(()) => refuses_new_and_keeps_the_rest("127.0.0.1:0", "127.0.0.1", true).await,
            // Linux asks for CAP_NET_ADMIN on TCP sockets (kernel commit 5d39580f68e6).
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
    }

    #[tokio::test]
    async fn the_sink_refuses_new_handshakes_on_every_kind_of_address() {
        refuses_new_and_keeps_the_rest("127.0.0.1:0", "127.0.0.1", false).await;
        refuses_new_and_keeps_the_rest("[::1]:0", "::1", false).await;
        // Dual stack: an IPv4 client reaches the IPv6 socket; the plug comes from ::1.
        refuses_new_and_keeps_the_rest("[::]:0", "127.0.0.1", false).await;
    }

    #[tokio::test]
    async fn a_second_server_on_the_same_address_still_fails() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(bind(addr).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            std::net::TcpListener::bind(addr).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }

    #[tokio::test]
    async fn a_listener_bound_elsewhere_is_still_emptied_before_closing() {
        // No SO_REUSEPORT: no sink; whatever the filter does, the queue is served.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(linux::Sink::open(&listener).await.is_err());
        let queued = TcpStream::connect(addr).await.unwrap();
        let mut served = Vec::new();
        let closed = close(listener, |stream| {
            served.push(stream.peer_addr().unwrap());
            async {}
        })
        .await;
        assert_eq!(served, [queued.local_addr().unwrap()]);
        assert_eq!(closed.queued, 1);
    }
}
