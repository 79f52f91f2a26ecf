//! ess-router: the matrix-stack chart's HAProxy, rebuilt on Pingora. It routes Matrix
//! traffic to Synapse worker pools, answers the well-known and monitoring ports, and
//! refuses what Synapse cannot take with the chart's 429.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod answers;
pub mod config;
pub mod discovery;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod reload;
pub mod request;
pub mod routes;
pub mod server;
pub mod state;
pub mod worker;
