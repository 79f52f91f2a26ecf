//! `essctl`: what an Element Server Suite deployment on one Docker host is. The operator's
//! deployment file, the secrets every service needs, and every service's rendered
//! configuration, up to (not including) the Docker calls.
#![forbid(unsafe_code)]

pub mod deployment;
pub mod docker;
pub mod images;
pub mod render;
pub mod secret_source;
pub mod secrets;
pub mod stack;
pub mod vault;
