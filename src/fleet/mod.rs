//! Fleet: one policy over many workloads, and the work shared across replicas. Pure decisions the
//! controller wires: which policy remediates a workload several policies cover ([`precedence`]),
//! and which replica's shard a workload belongs to ([`shard`]).

pub mod keeper;
pub mod leases;
pub mod precedence;
pub mod shard;
