//! The SQL operators' code that runs inside workers, apart from planning: what an operator
//! does with each row and what it keeps in keyed state. The planner (plan.rs and plan/)
//! decides which of these run and wires them onto the engine's streams.

pub(crate) mod rank;
pub(crate) mod regular_join;
