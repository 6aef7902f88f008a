//! A loopback address whose accept queue is full, so a connect to it hangs until the client's
//! connect timeout: backlog 0 and never accepting; once the queue holds a handshake or two, the
//! kernel drops further SYNs. Shared by `src/net/tests.rs` (through `#[path]`) and the integration
//! tests. I/O (loopback only).

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Keeps the queue full while it lives.
pub struct FullQueue {
    /// Where a connect hangs.
    pub addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<Socket>,
}

impl FullQueue {
    /// Binds, fills the queue, and waits a moment for the handshakes to land in it.
    pub fn new() -> FullQueue {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let fillers = (0..4)
            .map(|_| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&addr.into());
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        FullQueue {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}
