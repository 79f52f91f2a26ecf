//! A small authoritative DNS server for the discovery tests: it answers A, AAAA and SRV
//! questions over UDP from a table the test changes while the router runs, and can be
//! stopped and started again on the same address to play a DNS outage. Written against
//! RFC 1035 and RFC 2782 directly rather than with the router's DNS library, so the two
//! sides do not share a misreading.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const NXDOMAIN: u16 = 3;
const NOTIMP: u16 = 4;

/// One SRV record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

impl Srv {
    /// A target as Kubernetes gives them: priority 0, equal weights.
    pub fn new(target: &str, port: u16) -> Srv {
        Srv {
            priority: 0,
            weight: 100,
            port,
            target: target.to_string(),
        }
    }
}

#[derive(Debug)]
struct Zone {
    addresses: HashMap<String, Vec<IpAddr>>,
    srv: HashMap<String, Vec<Srv>>,
    /// Whether SRV answers carry their targets' addresses in the additional section.
    glue: bool,
}

/// The server; stopped when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    questions: Arc<AtomicUsize>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl DnsServer {
    /// Serve on a free UDP port of `ip`.
    pub fn start(ip: &str) -> DnsServer {
        let socket = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind udp {ip}:0: {e}"));
        let addr = socket.local_addr().expect("local address");
        let mut server = DnsServer {
            addr,
            zone: Arc::new(Mutex::new(Zone {
                addresses: HashMap::new(),
                srv: HashMap::new(),
                glue: true,
            })),
            questions: Arc::new(AtomicUsize::new(0)),
            running: None,
        };
        server.serve(socket);
        server
    }

    /// Set the A and AAAA records of `name` (replacing what it had); empty: the name has
    /// no addresses (NXDOMAIN unless it has SRV records).
    pub fn set_addresses(&self, name: &str, addrs: &[IpAddr]) {
        let mut zone = self.zone();
        if addrs.is_empty() {
            zone.addresses.remove(&key(name));
        } else {
            zone.addresses.insert(key(name), addrs.to_vec());
        }
    }

    /// Set the SRV records of `name`; empty: none.
    pub fn set_srv(&self, name: &str, records: &[Srv]) {
        let mut zone = self.zone();
        if records.is_empty() {
            zone.srv.remove(&key(name));
        } else {
            zone.srv.insert(key(name), records.to_vec());
        }
    }

    /// Whether SRV answers include their targets' addresses (on by default, as CoreDNS).
    pub fn set_glue(&self, on: bool) {
        self.zone().glue = on;
    }

    /// How many questions were answered so far.
    pub fn questions(&self) -> usize {
        self.questions.load(Ordering::Relaxed)
    }

    /// Stop answering and close the port: lookups time out.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Answer again, on the same address, from the same table.
    pub fn resume(&mut self) {
        if self.running.is_some() {
            return;
        }
        let socket = UdpSocket::bind(self.addr)
            .unwrap_or_else(|e| panic!("bind udp {} again: {e}", self.addr));
        self.serve(socket);
    }

    fn serve(&mut self, socket: UdpSocket) {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("socket timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let zone = self.zone.clone();
        let questions = self.questions.clone();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let reply = {
                    let zone = zone.lock().unwrap_or_else(|p| p.into_inner());
                    answer(&zone, &buf[..len])
                };
                if let Some(reply) = reply {
                    questions.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        self.running = Some((stop, thread));
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Names compare without case and without the root's trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The reply to one query message; `None` for what is not a query worth answering.
fn answer(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let opcode = (query[2] >> 3) & 0x0f;
    let (labels, end) = read_name(query, 12)?;
    let question_end = end + 4;
    let question = query.get(12..question_end)?;
    let qtype = u16::from_be_bytes([query[end], query[end + 1]]);
    let qclass = u16::from_be_bytes([query[end + 2], query[end + 3]]);
    let name = key(&labels.join("."));

    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut additionals: Vec<Vec<u8>> = Vec::new();
    // The question's name is at offset 12: answers point there (RFC 1035 4.1.4).
    let here = [0xc0, 0x0c];
    let addresses = zone.addresses.get(&name);
    match qtype {
        TYPE_A | TYPE_AAAA if qclass == CLASS_IN => {
            for ip in addresses.into_iter().flatten() {
                if let Some((rtype, rdata)) = address_rdata(ip, qtype) {
                    answers.push(record(&here, rtype, &rdata));
                }
            }
        }
        TYPE_SRV if qclass == CLASS_IN => {
            for srv in zone.srv.get(&name).into_iter().flatten() {
                let mut rdata = Vec::new();
                rdata.extend(srv.priority.to_be_bytes());
                rdata.extend(srv.weight.to_be_bytes());
                rdata.extend(srv.port.to_be_bytes());
                rdata.extend(encode_name(&srv.target));
                answers.push(record(&here, TYPE_SRV, &rdata));
                if zone.glue {
                    let target = encode_name(&srv.target);
                    for ip in zone.addresses.get(&key(&srv.target)).into_iter().flatten() {
                        if let Some((rtype, rdata)) = address_rdata(ip, 0) {
                            additionals.push(record(&target, rtype, &rdata));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    let exists = addresses.is_some() || zone.srv.contains_key(&name);
    let rcode = match (opcode, exists) {
        (0, true) => 0,
        (0, false) => NXDOMAIN,
        _ => NOTIMP,
    };

    // QR, the query's opcode, AA, the query's RD, RA, and the response code.
    let flags = 0x8000
        | (u16::from(opcode) << 11)
        | 0x0400
        | (u16::from(query[2] & 1) << 8)
        | 0x0080
        | rcode;
    let mut reply = Vec::with_capacity(512);
    reply.extend(&query[..2]);
    reply.extend(flags.to_be_bytes());
    for count in [1, answers.len(), 0, additionals.len()] {
        reply.extend(u16::try_from(count).ok()?.to_be_bytes());
    }
    reply.extend(question);
    for rr in answers.iter().chain(&additionals) {
        reply.extend(rr);
    }
    Some(reply)
}

/// The type and data of an address record; `want` 0 takes either family.
fn address_rdata(ip: &IpAddr, want: u16) -> Option<(u16, Vec<u8>)> {
    match ip {
        IpAddr::V4(v4) if want == 0 || want == TYPE_A => Some((TYPE_A, v4.octets().to_vec())),
        IpAddr::V6(v6) if want == 0 || want == TYPE_AAAA => Some((TYPE_AAAA, v6.octets().to_vec())),
        _ => None,
    }
}

/// A resource record of class IN with a one-second TTL.
fn record(name: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut rr = name.to_vec();
    rr.extend(rtype.to_be_bytes());
    rr.extend(CLASS_IN.to_be_bytes());
    rr.extend(1u32.to_be_bytes());
    rr.extend(u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
    rr.extend(rdata);
    rr
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend(label.as_bytes());
    }
    out.push(0);
    out
}

/// The labels of the uncompressed name at `at`, and the offset after it. Queries carry no
/// compression pointers.
fn read_name(msg: &[u8], mut at: usize) -> Option<(Vec<String>, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            return Some((labels, at));
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(at..at + len)?).into_owned());
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(encode_name(name));
        q.extend(qtype.to_be_bytes());
        q.extend(CLASS_IN.to_be_bytes());
        q
    }

    fn zone() -> Zone {
        let mut zone = Zone {
            addresses: HashMap::new(),
            srv: HashMap::new(),
            glue: true,
        };
        zone.addresses.insert(
            "fed-0.fed.test".into(),
            vec!["127.0.0.3".parse().expect("ip")],
        );
        zone.srv.insert(
            "_synapse-http._tcp.fed.test".into(),
            vec![Srv::new("fed-0.fed.test", 8008)],
        );
        zone
    }

    #[test]
    fn a_question_gets_its_records_with_the_id_and_question_echoed() {
        let q = query("FED-0.fed.test.", TYPE_A);
        let r = answer(&zone(), &q).expect("reply");
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[12..q.len()], &q[12..]);
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 3]);
    }

    #[test]
    fn srv_answers_carry_glue_and_unknown_names_are_nxdomain() {
        let r = answer(&zone(), &query("_synapse-http._tcp.fed.test", TYPE_SRV)).expect("reply");
        assert_eq!((&r[6..8], &r[10..12]), (&[0u8, 1][..], &[0u8, 1][..]));
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 3]);
        let r = answer(&zone(), &query("nothing.test", TYPE_A)).expect("reply");
        assert_eq!(r[3] & 0x0f, 3);
        let r = answer(&zone(), &query("fed-0.fed.test", TYPE_AAAA)).expect("reply");
        assert_eq!((r[3] & 0x0f, &r[6..8]), (0, &[0u8, 0][..]), "NODATA");
    }
}
