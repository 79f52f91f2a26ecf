//! The Docker step: the stack described by [`crate::stack`] and [`crate::render`] brought up,
//! changed and torn down through the Docker Engine API (bollard), compose-compatible labels
//! included so that `docker compose ls/ps` and other tools see the project.

pub mod access;
pub mod admin;
pub mod client;
pub mod compose;
pub mod down;
pub mod logs;
pub mod overrides;
pub mod plan;
pub mod prepare;
pub mod probe;
pub mod pull;
pub mod spec;
pub mod status;
pub mod up;
pub mod verbs;
pub mod verify;

pub use client::{DockerError, Engine};
pub use overrides::Overrides;
pub use plan::{Action, Plan};
pub use prepare::{Prepared, Project};
pub use spec::{ContainerSpec, Desired};

#[cfg(test)]
mod tests;
