//! How replicas share the shards, decided from what the Leases say. Each replica renews a member
//! Lease of its own (so the others know it is alive) and holds some of the shard Leases: at most
//! its fair share, ⌈shards ÷ live replicas⌉. Every round it renews what it holds, gives back what
//! is beyond its share (after draining: the runtime finishes the shard's work in flight first),
//! and takes free or expired shards up to its share, trying them in an order of its own so that
//! replicas starting together rarely race for the same one (the API server's optimistic
//! concurrency settles the races that remain). Pure: the Leases and the time in, the moves out.

use std::time::Duration;

use jiff::Timestamp;

use crate::clock;

/// What a Lease says: who holds it and until when it holds without renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The holder's identity (None: never held, or given back).
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Duration,
}

impl LeaseView {
    /// Held by someone whose renewal has not run out at `now`.
    fn live_holder(&self, now: Timestamp) -> Option<&str> {
        let renewed = self.renewed?;
        let holder = self.holder.as_deref().filter(|h| !h.is_empty())?;
        (now < clock::after(renewed, self.duration)).then_some(holder)
    }
}

/// What a replica does with a shard Lease this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Move {
    /// Renew a shard it holds.
    Renew(u32),
    /// Give a shard back: beyond its fair share.
    Release(u32),
    /// Take a free or expired shard.
    Acquire(u32),
}

/// The fair share of `shards` among `live` replicas.
pub fn fair_share(shards: u32, live: usize) -> u32 {
    let live = u32::try_from(live.max(1)).unwrap_or(u32::MAX);
    shards.div_ceil(live)
}

/// This round's moves for replica `me`, from the shard Leases (index = shard) and the member
/// Leases of every replica.
pub fn moves(shards: &[LeaseView], members: &[LeaseView], me: &str, now: Timestamp) -> Vec<Move> {
    let count = u32::try_from(shards.len()).unwrap_or(u32::MAX);
    let live = members
        .iter()
        .filter_map(|m| m.live_holder(now))
        .filter(|h| *h != me)
        .count()
        + 1;
    let fair = fair_share(count, live);
    let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    let mine: Vec<u32> = shards
        .iter()
        .enumerate()
        .filter(|(_, l)| l.live_holder(now) == Some(me))
        .map(|(i, _)| index(i))
        .collect();
    let held = u32::try_from(mine.len()).unwrap_or(u32::MAX);
    let mut out: Vec<Move> = Vec::new();
    // Keep the lowest shards, give back the rest beyond the share.
    for (n, shard) in mine.iter().enumerate() {
        out.push(if index(n) < fair {
            Move::Renew(*shard)
        } else {
            Move::Release(*shard)
        });
    }
    if held < fair && count > 0 {
        let start = super::shard::shard_of("", "replica", me, count);
        let free = (0..count)
            .map(|k| (start + k) % count)
            .filter(|s| shards[*s as usize].live_holder(now).is_none());
        out.extend(free.take((fair - held) as usize).map(Move::Acquire));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::at;

    const D: Duration = Duration::from_secs(15);

    fn now() -> Timestamp {
        at("2026-01-01T00:01:00Z")
    }

    /// A Lease held by `holder` (empty: free), renewed `ago` seconds before now.
    fn lease(holder: &str, ago: i64) -> LeaseView {
        LeaseView {
            holder: (!holder.is_empty()).then(|| holder.to_owned()),
            renewed: Some(now() - jiff::SignedDuration::from_secs(ago)),
            duration: D,
        }
    }

    fn members(names: &[&str]) -> Vec<LeaseView> {
        names.iter().map(|n| lease(n, 1)).collect()
    }

    fn acquired(moves: &[Move]) -> usize {
        moves.iter().filter(|m| matches!(m, Move::Acquire(_))).count()
    }

    #[test]
    fn the_share_is_fair() {
        assert_eq!(fair_share(3, 1), 3);
        assert_eq!(fair_share(3, 2), 2);
        assert_eq!(fair_share(3, 3), 1);
        assert_eq!(fair_share(3, 5), 1);
        assert_eq!(fair_share(3, 0), 3, "this replica always counts");
    }

    #[test]
    fn the_moves() {
        use Move::*;
        // (what, the shard Leases, the live members, this replica, its moves)
        type Case<'a> = (&'a str, Vec<LeaseView>, Vec<&'a str>, &'a str, Vec<Move>);
        let cases: [Case; 7] = [
            (
                "alone, it takes every shard",
                vec![lease("", 0), lease("", 0), lease("", 0)],
                vec!["a"],
                "a",
                vec![Acquire(0), Acquire(1), Acquire(2)],
            ),
            (
                "it renews what it holds within its share",
                vec![lease("a", 5), lease("b", 5), lease("c", 5)],
                vec!["a", "b", "c"],
                "b",
                vec![Renew(1)],
            ),
            (
                "a newcomer makes the holder of every shard give one back",
                vec![lease("a", 5), lease("a", 5), lease("a", 5)],
                vec!["a", "b"],
                "a",
                vec![Renew(0), Renew(1), Release(2)],
            ),
            (
                "the newcomer takes nothing another replica holds",
                vec![lease("a", 5), lease("a", 5), lease("a", 5)],
                vec!["a", "b"],
                "b",
                vec![],
            ),
            (
                "a dead replica's shard is taken once its Lease expires",
                vec![lease("a", 5), lease("b", 5), lease("c", 16)],
                vec!["a", "b"],
                "a",
                vec![Renew(0), Acquire(2)],
            ),
            (
                "not before",
                vec![lease("a", 5), lease("b", 5), lease("c", 14)],
                vec!["a", "b"],
                "a",
                vec![Renew(0)],
            ),
            (
                "a Lease of its own that ran out is taken again, not renewed",
                vec![lease("a", 20)],
                vec!["a"],
                "a",
                vec![Acquire(0)],
            ),
        ];
        for (what, shards, live, me, want) in cases {
            let mut got = moves(&shards, &members(&live), me, now());
            got.sort();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn replicas_starting_together_try_different_shards_first() {
        let free = vec![lease("", 0); 3];
        let first = |me: &str| moves(&free, &members(&["r-0", "r-1", "r-2"]), me, now())[0];
        let firsts: std::collections::BTreeSet<Move> = ["r-0", "r-1", "r-2"].into_iter().map(first).collect();
        assert!(firsts.len() >= 2, "{firsts:?}");
        for me in ["r-0", "r-1", "r-2"] {
            assert_eq!(
                acquired(&moves(&free, &members(&["r-0", "r-1", "r-2"]), me, now())),
                1
            );
        }
    }

    #[test]
    fn rounds_converge_to_a_fair_split() {
        // Two replicas join one that holds all nine shards; they take turns until nothing
        // changes: each holds three.
        let replicas = ["r-0", "r-1", "r-2"];
        let mut shards = vec![lease("r-0", 0); 9];
        for _ in 0..10 {
            for me in replicas {
                for m in moves(&shards, &members(&replicas), me, now()) {
                    match m {
                        Move::Acquire(s) | Move::Renew(s) => shards[s as usize] = lease(me, 0),
                        Move::Release(s) => shards[s as usize] = lease("", 0),
                    }
                }
            }
        }
        for me in replicas {
            let held = shards.iter().filter(|l| l.holder.as_deref() == Some(me)).count();
            assert_eq!(held, 3, "{me}: {shards:?}");
        }
    }
}
