//! `agentgen-environments`: families of verifiable tool-use environments.
//!
//! A [`Family`] is a seeded generator: `family.instance(seed)` builds a concrete environment (its
//! own data, tool subset, policy text) and `instance.task(seed)` a [`TaskSpec`] with a reference
//! solution and hidden verifier data. [`Instance::call`] executes tool calls against a [`State`]
//! (pure, deterministic, virtual clock); [`Instance::verify`] checks the final state. The
//! [`Registry`] lists every family in a fixed order and maps run indices to [`TaskRef`]s;
//! [`soundness`] runs the reference solution and the hack probes that must fail.
//!
//! This crate must not use tokio, the network, the host clock or the host filesystem (the code
//! interpreter's sandbox is the one guarded exception). Tool specs live as JSON files in
//! `tool-specs/<family>/` and are embedded at build time (see [`toolspec`]).

#![warn(missing_docs)]

pub mod check;
pub mod envpkg;
pub mod error;
pub mod families;
pub mod framework;
pub mod limits;
pub mod registry;
pub mod sandbox;
pub mod toolspec;
pub mod util;

pub use check::{
    CheckFailure, ProbeOutcome, SoundnessReport, check_tasks, run_reference, soundness,
};
pub use error::{Error, Result};
pub use framework::{
    Availability, Check, EnvFailure, Family, FamilyInfo, FollowUp, Instance, PackageInfo,
    ReferenceSolution, ReferenceTurn, Session, SessionResult, State, StateSession, TaskRef,
    TaskSpec, ToolResult, Verdict, start_session,
};
pub use registry::{InstanceCache, Registry, Selection};
pub use toolspec::{ToolSet, ToolSpec};
