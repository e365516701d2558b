//! Fleet: one policy over many workloads, and the work shared across replicas. Pure decisions:
//! which policy remediates a workload several policies cover ([`precedence`]), which shard a
//! workload belongs to ([`shard`]) and how replicas share the shards ([`leases`]), what a policy
//! over many workloads says in its status ([`summary`]); and the runtime that keeps the shard
//! Leases ([`keeper`]).

pub mod keeper;
pub mod leases;
pub mod precedence;
pub mod shard;
pub mod summary;
