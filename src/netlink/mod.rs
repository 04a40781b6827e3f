//! rtnetlink, synchronously: one socket per namespace, one request at a
//! time. A socket talks to the namespace of the thread that opened it, so
//! code running through [`crate::netns::NetNs::run`] opens its own.
//!
//! One module per concern: [`link`] (move+rename, MAC, MTU, up/down,
//! lookup), [`addr`] (addresses and routes), [`vf`] (PF-side VF attributes).

pub mod addr;
pub mod link;
#[cfg(test)]
pub(crate) mod test_ip;
mod unlocked;
pub mod vf;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, sent on or read from.
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel answered with an errno.
    #[error("{what}: {errno}")]
    Kernel {
        /// The request, with the interface it named.
        what: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// The kernel's answer could not be decoded.
    #[error("decoding netlink answer to {what}: {detail}")]
    Decode {
        /// The request.
        what: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// A link the caller named does not exist.
    #[error("no interface {0}")]
    NoSuchLink(String),
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Result alias for netlink operations.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// A route netlink socket bound to the current thread's namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Extended acks carry the kernel's text; harmless when unsupported.
        let _ = socket.set_ext_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; 256 * 1024],
        })
    }

    /// Opens a socket in `ns`: every request on it acts in that namespace,
    /// from any thread (see [`NetNs::create_in`]).
    pub fn open_in(ns: &crate::netns::NetNs) -> Result<Self> {
        ns.create_in(Self::open)
            .map_err(|e| NetlinkError::Socket(std::io::Error::other(e.to_string())))?
    }

    /// Sends a request that changes something and waits for its ack.
    pub fn change(&mut self, msg: RouteNetlinkMessage, what: &dyn Fn() -> String) -> Result<()> {
        self.exchange(msg, NLM_F_REQUEST | NLM_F_ACK, what)
            .map(|_| ())
    }

    /// Sends a request that creates an object (address, route) and waits
    /// for its ack; an existing object is an error (EEXIST).
    pub fn create(&mut self, msg: RouteNetlinkMessage, what: &dyn Fn() -> String) -> Result<()> {
        self.exchange(
            msg,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
        .map(|_| ())
    }

    /// Sends a get request and returns every answer (one for a single get,
    /// many for a dump).
    pub fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        dump: bool,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let flags = if dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST
        };
        self.exchange(msg, flags, what)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        self.socket.send(&out, 0).map_err(NetlinkError::Socket)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(NetlinkError::Socket)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..n])
                    .map_err(|e| NetlinkError::Decode {
                        what: what(),
                        detail: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                offset += len.max(1).next_multiple_of(4);
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(NetlinkError::Kernel {
                                what: what(),
                                errno: nix::errno::Errno::from_raw(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => {
                        answers.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
