//! A pool of Synapse servers: who is in it, who is up, which server a request goes to, and
//! the per-server connection limit with its waiting queue (HAProxy's `maxconn` and
//! `timeout queue`, which Pingora does not have).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_ketama::{Bucket, Continuum};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::config::PoolSettings;
use crate::metrics::{Metrics, PoolMetrics, ServerMetrics};
use crate::worker::{Balance, WorkerType};

/// One Synapse process. Shared by every pool that sends to it (main and main's fail-over
/// budget), so it is checked once and its state survives reloads and membership changes.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Stable name in logs and metrics, like HAProxy's `server-template`: `main1`,
    /// `federation-reader2`.
    pub name: String,
    up: AtomicBool,
}

impl Upstream {
    pub fn new(addr: SocketAddr, name: String, up: bool) -> Self {
        Upstream {
            addr,
            name,
            up: AtomicBool::new(up),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Returns whether the state changed.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::AcqRel) != up
    }
}

/// An upstream as a member of one pool, with that pool's connection budget for it.
pub struct Member {
    pub upstream: Arc<Upstream>,
    pub metrics: ServerMetrics,
    slots: Arc<Semaphore>,
    maxconn: u32,
}

impl Member {
    pub fn in_flight(&self) -> usize {
        (self.maxconn as usize).saturating_sub(self.slots.available_permits())
    }
}

struct Members {
    list: Vec<Arc<Member>>,
    ring: Continuum,
    by_addr: HashMap<SocketAddr, usize>,
}

impl Members {
    fn new(list: Vec<Arc<Member>>) -> Self {
        let buckets: Vec<Bucket> = list
            .iter()
            .map(|m| Bucket::new(m.upstream.addr, 1))
            .collect();
        let by_addr = list
            .iter()
            .enumerate()
            .map(|(i, m)| (m.upstream.addr, i))
            .collect();
        Members {
            ring: Continuum::new(&buckets),
            list,
            by_addr,
        }
    }
}

/// Why a pool could not take a request; both become the 429 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    NoLiveServer,
    QueueTimeout,
}

pub struct Pool {
    pub kind: WorkerType,
    /// `synapse-<type>`, or `synapse-main-failover` for main's fail-over budget.
    pub backend: String,
    pub balance: Balance,
    pub maxconn: u32,
    pub queue_timeout: Duration,
    pub server_timeout: Duration,
    pub fallback_to_main: bool,
    members: ArcSwap<Members>,
    next: AtomicUsize,
    /// Requests waiting for a slot, and the signal that one may have freed.
    waiting: AtomicUsize,
    freed: Notify,
    pub metrics: PoolMetrics,
    registry: Arc<Metrics>,
}

/// A request's place on a server; dropping it frees the place and wakes the queue.
pub struct Slot {
    pub member: Arc<Member>,
    pool: Arc<Pool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Pairs with the fence in `Pool::acquire`: either the waiter sees the freed permit
        // or we see the waiter.
        fence(Ordering::SeqCst);
        if self.pool.waiting.load(Ordering::Relaxed) > 0 {
            self.pool.freed.notify_waiters();
        }
    }
}

impl Pool {
    pub fn new(
        settings: &PoolSettings,
        backend: String,
        maxconn: u32,
        registry: Arc<Metrics>,
    ) -> Self {
        Pool {
            metrics: registry.pool(&backend),
            registry,
            kind: settings.kind,
            backend,
            balance: settings.balance,
            maxconn,
            queue_timeout: settings.queue_timeout,
            server_timeout: settings.server_timeout,
            fallback_to_main: settings.fallback_to_main,
            members: ArcSwap::from_pointee(Members::new(Vec::new())),
            next: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Replace the pool's upstreams. Members that stay keep their slots and requests in
    /// flight; the hash ring is rebuilt, which moves only the keys of servers that left
    /// or joined.
    pub fn set_upstreams(&self, upstreams: &[Arc<Upstream>]) {
        let current = self.members.load();
        let list = upstreams
            .iter()
            .map(|u| match current.by_addr.get(&u.addr) {
                Some(&i) if Arc::ptr_eq(&current.list[i].upstream, u) => current.list[i].clone(),
                _ => Arc::new(Member {
                    metrics: self.registry.server(&self.backend, &u.name),
                    upstream: u.clone(),
                    slots: Arc::new(Semaphore::new(self.maxconn as usize)),
                    maxconn: self.maxconn,
                }),
            })
            .collect();
        self.members.store(Arc::new(Members::new(list)));
        self.wake_waiters();
    }

    /// Take over the members of the same pool in the previous configuration, so that a
    /// reload keeps each server's place count (requests in flight on the old
    /// configuration still hold theirs) when the limit did not change.
    pub fn adopt(&self, previous: &Pool) {
        if previous.maxconn == self.maxconn && previous.backend == self.backend {
            self.members.store(previous.members.load_full());
        } else {
            self.set_upstreams(&previous.upstreams());
        }
    }

    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.members
            .load()
            .list
            .iter()
            .map(|m| m.upstream.clone())
            .collect()
    }

    pub fn members(&self) -> Vec<Arc<Member>> {
        self.members.load().list.clone()
    }

    pub fn has_live_server(&self) -> bool {
        self.members.load().list.iter().any(|m| m.upstream.is_up())
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A server came up or membership changed: queued requests may now find a place.
    pub fn wake_waiters(&self) {
        self.freed.notify_waiters();
    }

    /// Find a server for a request and take a place on it, waiting in the queue up to the
    /// pool's queue timeout when every candidate is at its limit. `key` is the balance key
    /// (empty: round robin); `avoid` is a server that just failed to connect. Also returns
    /// the time spent in the queue, zero (and no clock read) when a place was free.
    pub async fn acquire(
        self: &Arc<Self>,
        key: &[u8],
        avoid: Option<SocketAddr>,
    ) -> (Result<Slot, Unavailable>, Duration) {
        let hashed = self.balance != Balance::RoundRobin && !key.is_empty();
        let choose = |members: &Members| {
            if hashed {
                self.hashed_choice(members, key, avoid)
            } else {
                self.round_robin_choice(members, avoid)
            }
        };

        // Fast path: a place is free, no queue bookkeeping.
        let (result, waited) = match choose(&self.members.load()) {
            Choice::Got(slot) => (Ok(slot), Duration::ZERO),
            Choice::NoLiveServer => (Err(Unavailable::NoLiveServer), Duration::ZERO),
            Choice::Full => {
                let since = Instant::now();
                let result = self.wait_for_place(choose, since).await;
                (result, since.elapsed())
            }
        };

        match result {
            Err(Unavailable::NoLiveServer) => self.metrics.refused_no_server.inc(),
            Err(Unavailable::QueueTimeout) => self.metrics.refused_queue.inc(),
            Ok(_) => {}
        }
        (result, waited)
    }

    /// Every candidate is at its limit: wait in the queue until a place frees, a server
    /// comes up or the queue timeout passes.
    async fn wait_for_place(
        self: &Arc<Self>,
        choose: impl Fn(&Members) -> Choice,
        since: Instant,
    ) -> Result<Slot, Unavailable> {
        let deadline = since + self.queue_timeout;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Pairs with the fence in `Slot::drop`: either the releaser sees us waiting,
            // or we see the place it freed.
            fence(Ordering::SeqCst);
            match choose(&self.members.load()) {
                Choice::Got(slot) => break Ok(slot),
                Choice::NoLiveServer => break Err(Unavailable::NoLiveServer),
                Choice::Full => {}
            }
            if timeout_at(deadline, notified).await.is_err() {
                break Err(Unavailable::QueueTimeout);
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn take(self: &Arc<Self>, member: &Arc<Member>) -> Option<Slot> {
        let permit = member.slots.clone().try_acquire_owned().ok()?;
        Some(Slot {
            member: member.clone(),
            pool: self.clone(),
            permit: Some(permit),
        })
    }

    /// Consistent hashing: the first live server clockwise from the key on the ring. A
    /// full server queues the request (its key belongs there), as HAProxy does.
    fn hashed_choice(
        self: &Arc<Self>,
        members: &Members,
        key: &[u8],
        avoid: Option<SocketAddr>,
    ) -> Choice {
        let mut fallback = None;
        for addr in members
            .ring
            .node_iter(key)
            .take(members.list.len() * 160 + 1)
        {
            let Some(&i) = members.by_addr.get(addr) else {
                continue;
            };
            let member = &members.list[i];
            if !member.upstream.is_up() {
                continue;
            }
            if Some(*addr) == avoid {
                fallback.get_or_insert(i);
                continue;
            }
            return self.take(member).map_or(Choice::Full, Choice::Got);
        }
        match fallback {
            Some(i) => self
                .take(&members.list[i])
                .map_or(Choice::Full, Choice::Got),
            None => Choice::NoLiveServer,
        }
    }

    fn round_robin_choice(
        self: &Arc<Self>,
        members: &Members,
        avoid: Option<SocketAddr>,
    ) -> Choice {
        let n = members.list.len();
        if n == 0 {
            return Choice::NoLiveServer;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut any_live = false;
        let mut avoided = None;
        for i in 0..n {
            let member = &members.list[(start + i) % n];
            if !member.upstream.is_up() {
                continue;
            }
            any_live = true;
            if Some(member.upstream.addr) == avoid {
                avoided = Some(member);
                continue;
            }
            if let Some(slot) = self.take(member) {
                return Choice::Got(slot);
            }
        }
        if let Some(slot) = avoided.and_then(|m| self.take(m)) {
            return Choice::Got(slot);
        }
        if any_live {
            Choice::Full
        } else {
            Choice::NoLiveServer
        }
    }
}

enum Choice {
    Got(Slot),
    Full,
    NoLiveServer,
}

#[cfg(test)]
mod tests;
